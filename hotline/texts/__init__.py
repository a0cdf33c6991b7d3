"""Every text a citizen reads or hears: one catalogue per language (``zh.py``, ``en.py``).

Each catalogue has three sections: ``HUB`` (what the hub says), ``BOT`` (what the Rasa
actions say) and ``IVR`` (what the phone line says, written to be heard). ``bots/`` runs
on Rasa's Python 3.10 and imports this package too, so it stays standard-library only.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

from hotline.texts import en, zh

Section = Literal["HUB", "BOT", "IVR"]
CATALOGUES: dict[str, ModuleType] = {"zh": zh, "en": en}
SECTIONS: tuple[Section, ...] = ("HUB", "BOT", "IVR")


def table(section: Section) -> dict[str, dict[str, str]]:
    """One section as ``{key: {lang: text}}``."""
    keys = getattr(zh, section)
    return {key: {lang: getattr(c, section)[key] for lang, c in CATALOGUES.items()} for key in keys}


def text(section: Section, key: str, lang: str, **values: Any) -> str:
    """``key`` of ``section`` in ``lang`` (Mandarin for an unknown language), filled in."""
    catalogue = CATALOGUES.get(lang, zh)
    template: str = getattr(catalogue, section)[key]
    return template.format(**values) if values else template


TEXTS = table("HUB")


def say(key: str, lang: str, **values: Any) -> str:
    """What the hub says."""
    return text("HUB", key, lang, **values)
