"""The WebSocket Origin check shared by the citizen and the agent sockets."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Same host, or an origin configured in ``HOTLINE_ALLOWED_ORIGINS``.

    A missing Origin is not a browser (browsers always send it on WebSocket upgrades).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if f"{parts.scheme}://{parts.netloc}" in allowed:
        return True
    return parts.netloc == request.host
