"""Which language a citizen wrote in: Mandarin (any CJK character) or English."""

from __future__ import annotations

import re
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]{2,}")


def detect(text: str, fallback: Lang) -> Lang:
    """``zh`` if the text has Chinese, ``en`` if it has English words, else ``fallback``.

    Digits-only answers (a PIN, a phone number) keep the conversation's language.
    """
    if _CJK.search(text):
        return "zh"
    if _LATIN.search(text):
        return "en"
    return fallback


def parse(value: object) -> Lang | None:
    return value if value in LANGS else None
