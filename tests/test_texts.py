"""One catalogue per language: every text exists in both, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from hotline.texts import CATALOGUES, SECTIONS, Section, en, text, zh


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("section", SECTIONS)
def test_every_language_has_every_text_with_the_same_placeholders(section: Section) -> None:
    mandarin, english = getattr(zh, section), getattr(en, section)
    assert mandarin.keys() == english.keys()
    for key, template in mandarin.items():
        assert template.strip() and english[key].strip(), key
        assert placeholders(template) == placeholders(english[key]), key


def test_an_unknown_language_reads_mandarin() -> None:
    assert set(CATALOGUES) == {"zh", "en"}
    assert text("BOT", "greet", "fr") == zh.BOT["greet"]
    assert "12309" in text("IVR", "welcome", "en")
