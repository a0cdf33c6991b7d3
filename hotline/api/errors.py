"""JSON error responses for the staff API: a code for programs, a sentence for people."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

_BY_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    429: web.HTTPTooManyRequests,
}


def json_error(
    status: int, code: str, message: str, message_zh: str | None = None, **extra: Any
) -> web.HTTPException:
    """An exception to raise: ``{"error": code, "message": ..., "message_zh"?: ...}``."""
    body: dict[str, Any] = {"error": code, "message": message, **extra}
    if message_zh is not None:
        body["message_zh"] = message_zh
    cls = _BY_STATUS.get(status, web.HTTPBadRequest)
    return cls(text=json.dumps(body, ensure_ascii=False), content_type="application/json")


async def read_json(request: web.Request, max_bytes: int = 64 * 1024) -> Any:
    """The parsed body; garbage (not JSON, bad UTF-8, absurd nesting) is a 400."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise json_error(400, "bad_request", f"body is larger than {max_bytes} bytes")
    try:
        return json.loads((await request.read()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise json_error(400, "bad_request", "body must be JSON", "请求内容必须是 JSON") from exc


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise json_error(
            400, "bad_request", "body must be a JSON object", "请求内容必须是 JSON 对象"
        )
    return data


# ------------------------------------------------------------------ typed bodies
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")


def bad_request(message: str) -> web.HTTPException:
    """A 400 ``{"error": "bad_request", "message": ...}`` naming what is wrong."""
    return json_error(400, "bad_request", message, "请求内容有误：" + message)


def encodable(text: str) -> bool:
    """False for lone surrogates (JSON allows ``"\\ud800"``; the database does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str, *, multiline: bool = True) -> bool:
    """True if ``text`` can be stored: UTF-8 encodable, no NUL or other control characters
    (tabs and line breaks allowed when ``multiline``)."""
    return encodable(text) and not (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(text)


class Fields:
    """Typed reads from one JSON object; any problem is a 400 that names the field.

    ``allowed`` lists the fields the endpoint knows; others are a 400, unless
    ``allowed`` is None (the endpoint ignores what it does not read) or they are named
    in ``ignored``. Every reader checks the JSON type first, so a list or an object where
    a string belongs is a 400, never a ``TypeError`` further down.
    """

    def __init__(
        self,
        data: Any,
        allowed: Iterable[str] | None,
        *,
        where: str = "body",
        ignored: Iterable[str] = (),
    ) -> None:
        if not isinstance(data, dict):
            raise bad_request(f"{where} must be a JSON object")
        skip = frozenset(ignored)
        if allowed is not None:
            unknown = sorted(set(data) - set(allowed) - skip)
            if unknown:
                raise bad_request(f"{where}: unknown field {unknown[0][:40]!r}")
        self.data: dict[str, Any] = {k: v for k, v in data.items() if k not in skip}
        self.where = where

    def has(self, key: str) -> bool:
        return key in self.data

    def name(self, key: str) -> str:
        return key if self.where == "body" else f"{self.where}.{key}"

    def text(
        self,
        key: str,
        *,
        max_len: int,
        pattern: re.Pattern[str] | None = None,
        multiline: bool = False,
    ) -> str:
        """A required, non-blank string (stripped), without control characters."""
        value = self.data.get(key)
        if value is None:
            raise bad_request(f"{self.name(key)} is required")
        if not isinstance(value, str):
            raise bad_request(f"{self.name(key)} must be a string")
        value = value.strip()
        if not value:
            raise bad_request(f"{self.name(key)} must not be empty")
        if len(value) > max_len:
            raise bad_request(f"{self.name(key)} is longer than {max_len} characters")
        if not clean_text(value, multiline=multiline):
            raise bad_request(f"{self.name(key)} contains control or invalid characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise bad_request(f"{self.name(key)} has an invalid format")
        return value

    def opt_text(
        self,
        key: str,
        *,
        max_len: int,
        pattern: re.Pattern[str] | None = None,
        multiline: bool = False,
        blank_is_none: bool = False,
    ) -> str | None:
        """Absent or null (or blank, with ``blank_is_none``): None; otherwise as :meth:`text`."""
        value = self.data.get(key)
        if value is None or (blank_is_none and isinstance(value, str) and not value.strip()):
            return None
        return self.text(key, max_len=max_len, pattern=pattern, multiline=multiline)

    def choice(self, key: str, options: Iterable[str]) -> str:
        """A required string that is one of ``options``."""
        allowed = sorted(options)
        value = self.data.get(key)
        if not isinstance(value, str) or value not in allowed:
            raise bad_request(f"{self.name(key)} must be one of {', '.join(allowed)}")
        return value

    def opt_choice(self, key: str, options: Iterable[str]) -> str | None:
        return None if self.data.get(key) is None else self.choice(key, options)

    def integer(self, key: str, lo: int, hi: int) -> int:
        value = self.data.get(key)
        # bool is an int in Python, never in this API.
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_request(f"{self.name(key)} must be an integer")
        if not lo <= value <= hi:
            raise bad_request(f"{self.name(key)} must be between {lo} and {hi}")
        return value

    def opt_integer(self, key: str, lo: int, hi: int) -> int | None:
        return None if self.data.get(key) is None else self.integer(key, lo, hi)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise bad_request(f"{self.name(key)} must be true or false")
        return value

    def list_of_text(
        self,
        key: str,
        *,
        max_items: int,
        max_len: int,
        pattern: re.Pattern[str] | None = None,
    ) -> list[str] | None:
        """Absent or null: None; else a list of at most ``max_items`` clean strings."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > max_items:
            raise bad_request(f"{self.name(key)} must be a list of at most {max_items} strings")
        for item in value:
            if (
                not isinstance(item, str)
                or not item
                or len(item) > max_len
                or not clean_text(item, multiline=False)
                or (pattern is not None and not pattern.fullmatch(item))
            ):
                raise bad_request(
                    f"{self.name(key)}: each must be a string of at most {max_len} characters"
                    + (" in the right format" if pattern is not None else "")
                )
        return list(value)

    def text_map(
        self, key: str, *, max_items: int, max_key: int = 64, max_len: int
    ) -> dict[str, str] | None:
        """Absent or null: None; else an object mapping short names to (multiline) text."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict) or len(value) > max_items:
            raise bad_request(f"{self.name(key)} must be an object of at most {max_items} fields")
        for name, item in value.items():
            if len(name) > max_key or not clean_text(name, multiline=False):
                raise bad_request(f"{self.name(key)}: field names must be short plain text")
            if not isinstance(item, str):
                raise bad_request(f"{self.name(key)}.{name[:40]} must be a string")
            if len(item) > max_len or not clean_text(item):
                raise bad_request(
                    f"{self.name(key)}.{name[:40]} must be text of at most {max_len} characters"
                )
        return dict(value)


async def json_fields(
    request: web.Request, allowed: Iterable[str] | None = None, *, ignored: Iterable[str] = ()
) -> Fields:
    """The request's JSON object as :class:`Fields` (see there for ``allowed``)."""
    return Fields(await read_json(request), allowed, ignored=ignored)
