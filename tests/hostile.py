"""Hostile input for contract tests of every channel and endpoint.

Channels differ in transport, but each hands the hub text, ids and payloads that came
from outside, and each must answer bad input with an error rather than a crash. These
generators are shared so that every channel's tests throw the same things at it:

* :func:`unstorable_texts`: strings no channel may store (lone surrogates, NUL). A
  channel must refuse each with an error and stay up.
* :func:`awkward_texts`: valid but unusual text (bidi overrides, emoji sequences, format
  strings, SQL). A channel must store each intact or refuse it, never crash.
* :func:`hostile_texts`: both.
* :func:`hostile_values`: JSON values of the wrong type or shape for a string field.
* :func:`hostile_json_documents`: raw JSON (or almost-JSON) text that strains a parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

DEEP = 20_000  # nesting levels: far beyond what json.loads can recurse into


def unstorable_texts() -> Iterator[str]:
    """Strings that cannot be stored as UTF-8 text in SQLite and PostgreSQL."""
    yield "\ud800"  # a lone high surrogate
    yield "\udfff"  # a lone low surrogate
    yield "\ud800 x"  # ... with ordinary text after it
    yield "举报\udc80内容"  # ... inside Chinese text (a surrogateescape'd byte)
    yield "\udfff\ud800"  # a reversed pair is two lone surrogates
    yield "\x00"  # NUL alone
    yield "abc\x00def"  # NUL inside text (PostgreSQL refuses it)


def awkward_texts() -> Iterator[str]:
    """Valid Unicode that has broken naive code elsewhere."""
    yield "\u202etxt.exe"  # right-to-left override
    yield "a\u200bb\u200dc\ufeff"  # zero-width characters and a BOM
    yield "👩‍👩‍👧‍👦🏳️‍🌈"  # emoji sequences joined by ZWJ
    yield "e\u0301\u0301\u0301\u0301"  # stacked combining marks
    yield "\U0010ffff\U0001f600"  # astral plane, the last code point
    yield "%s %n {0} {name} {{}}"  # format strings
    yield "'; DROP TABLE message; --"  # SQL
    yield "<script>alert(1)</script>"  # markup
    yield "line\u2028sep\u2029para\r\n\t"  # line and paragraph separators
    yield "\x1b[31mred\x07"  # terminal escapes


def hostile_texts() -> Iterator[str]:
    yield from unstorable_texts()
    yield from awkward_texts()


def hostile_values(long: int = 100_000) -> Iterator[Any]:
    """Values that do not belong in a string field of a JSON body or frame.

    ``long`` is the length of the over-long string (keep it under a transport's own size
    limit when the point is to reach the field check rather than that limit).
    """
    yield []
    yield {"a": 1}
    yield 1
    yield 1.5
    yield True
    yield None
    yield 10**40  # more digits than any integer column
    yield 1e308
    yield ["x"] * 3
    yield [[[[[[[[[[[]]]]]]]]]]]  # nested, but within what json.loads takes
    yield "x" * long
    yield from unstorable_texts()


def hostile_json_documents() -> Iterator[tuple[str, str]]:
    """(label, raw text) pairs: documents that are not valid JSON, or strain the parser."""
    yield "deep arrays", "[" * DEEP + "]" * DEEP
    yield "deep objects", '{"a":' * (DEEP // 2) + "1" + "}" * (DEEP // 2)
    yield "huge integer", "9" * 5_000  # beyond Python's int-from-string limit
    yield "NaN", "NaN"
    yield "Infinity", "-Infinity"
    yield "truncated", '{"type": "mess'
    yield "trailing garbage", '{"type": "ping"} x'
    yield "single quotes", "{'type': 'ping'}"
    yield "lone surrogate escape", '"\\ud800"'
    yield "empty", ""
    yield "bare word", "ping"
    yield "list", "[]"
    yield "string", '"hello"'
    yield "number", "1"
    yield "null", "null"
    yield "true", "true"
