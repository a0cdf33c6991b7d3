"""Template text: ``{placeholder}`` fields, ``{{``/``}}`` for literal braces. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping

# What a template may name, and where the value comes from (see ``render``):
# name: the member's name; case_code: the member's value; date/time: the member's
# value, else the send's scheduled time in the hotline's time zone.
PLACEHOLDERS = ("name", "case_code", "date", "time")
DEFAULTED = frozenset({"date", "time"})

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    pass


def placeholders(text: str) -> list[str]:
    """The placeholders ``text`` uses, in order, each once; TemplateError names a bad one."""
    found: list[str] = []
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        if token in ("{", "}"):
            raise TemplateError("unmatched brace (write {{ or }} for a literal brace)")
        name = (m.group(1) or "").strip()
        if name not in PLACEHOLDERS:
            shown = name[:40] if name else ""
            raise TemplateError(
                f"unknown placeholder {{{shown}}} (known: "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                + ")"
            )
        if name not in found:
            found.append(name)
    return found


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each placeholder replaced; a missing value becomes empty."""

    def one(m: re.Match[str]) -> str:
        piece = m.group(0)
        if piece == "{{":
            return "{"
        if piece == "}}":
            return "}"
        if piece in ("{", "}"):  # checked on save; stay literal if it slipped through
            return piece
        return values.get((m.group(1) or "").strip(), "")

    return _TOKEN.sub(one, text)


def missing(text: str, values: Mapping[str, str]) -> list[str]:
    """Placeholders of ``text`` this member has no value for."""
    return [p for p in placeholders(text) if not values.get(p)]
