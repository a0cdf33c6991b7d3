"""What the IVR says: the ``IVR`` section of ``hotline/texts``, and how text meant to be
read (the hub's replies, the bot's) is made fit to be heard."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hotline.lang import Lang
from hotline.texts import table, text

PROMPTS = table("IVR")


def prompt(key: str, lang: Lang, **values: Any) -> str:
    return text("IVR", key, lang, **values)


def spell(digits: str, lang: Lang) -> str:
    """Digits one by one, as a code must be read out ("1 2 3", not "one hundred ...")."""
    return ("，" if lang == "zh" else ", ").join(
        " ".join(digits[i : i + 4]) for i in range(0, len(digits), 4)
    )


_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_MARKUP = re.compile(r"[*_`#>|]+")
_BULLET = re.compile(r"^\s*(?:[-•]|\d+[.)])\s+", re.MULTILINE)
_LONG_NUMBER = re.compile(r"\d{5,}")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_SENTENCE_END = tuple("。！？.!?:：;；")


def speakable(text: str, lang: Lang) -> str:
    """Text to be heard: markup dropped, long numbers read digit by digit (a case code
    is not "two hundred billion..."), ISO dates read as dates."""
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _BULLET.sub("", text)
    text = _MARKUP.sub("", text)
    text = _ISO_DATE.sub(lambda m: _date(m, lang), text)
    text = _LONG_NUMBER.sub(lambda m: spell(m.group(), lang), text)
    return " ".join(text.split())


def spoken_lines(text: str, lang: Lang) -> str:
    """A reply laid out in lines (a case's status) read as sentences, one per line."""
    stop = "。" if lang == "zh" else "."
    lines = [speakable(line, lang) for line in text.splitlines()]
    return " ".join(line if line.endswith(_SENTENCE_END) else line + stop for line in lines if line)


def _date(match: re.Match[str], lang: Lang) -> str:
    try:
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return match[0]
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else day.strftime("%B %d, %Y")
