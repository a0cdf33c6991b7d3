"""What the bot says, in Mandarin and English: the ``BOT`` section of ``hotline/texts``."""

from __future__ import annotations

from typing import Any

from hotline.texts import table, text

TEXTS = table("BOT")


def say(key: str, lang: str, **values: Any) -> str:
    return text("BOT", key, lang, **values)
