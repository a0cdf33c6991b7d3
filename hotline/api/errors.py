"""JSON error responses for the staff API: a code for programs, a sentence for people."""

from __future__ import annotations

import json
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
