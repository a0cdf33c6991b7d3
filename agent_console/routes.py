"""Serve the agent console, the supervisor page and the call records under ``/console/``.

The pages are static; all data comes from ``/api/...`` and ``/ws/agent``. They show
citizens' words to staff who hold sessions able to read identities, so they get the
strictest policy we can afford: no inline script or style, no framing, nothing loaded
from anywhere but this origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC: Final = Path(__file__).resolve().parent / "static"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; media-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

_CONTENT_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def _headers(content_type: str) -> dict[str, str]:
    # no-cache, not no-store: the browser revalidates (cheap 304s) and never runs
    # yesterday's console against today's API.
    return {
        "Content-Type": content_type,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
    }


def _assets() -> dict[str, Path]:
    """The scripts and stylesheets that may be fetched, by file name.

    A fixed list read at start: a request can only name one of these files, so no
    path from the URL ever reaches the file system.
    """
    return {
        path.name: path
        for path in sorted(STATIC.iterdir())
        if path.is_file() and path.suffix in _CONTENT_TYPES
    }


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers=_headers("text/html; charset=utf-8"))


async def console_page(_request: web.Request) -> web.FileResponse:
    """``GET /console/``: the agent console."""
    return _page("index.html")


async def supervisor_page(_request: web.Request) -> web.FileResponse:
    """``GET /console/supervisor``: queue and agent figures for supervisors."""
    return _page("supervisor.html")


async def calls_page(_request: web.Request) -> web.FileResponse:
    """``GET /console/calls``: search call records and listen to recordings."""
    return _page("calls.html")


async def to_console(_request: web.Request) -> web.StreamResponse:
    """``GET /console``: the pages use absolute paths, but people type the short URL."""
    raise web.HTTPFound("/console/")


def add_routes(app: web.Application) -> None:
    """Register the console pages and their static files on ``app``."""
    assets = _assets()

    async def asset(request: web.Request) -> web.FileResponse:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=_headers(_CONTENT_TYPES[path.suffix]))

    app.router.add_get("/console", to_console)
    app.router.add_get("/console/", console_page)
    app.router.add_get("/console/supervisor", supervisor_page)
    app.router.add_get("/console/calls", calls_page)

    async def sms_page(_request: web.Request) -> web.FileResponse:
        """``GET /console/sms``: SMS group sends (templates, groups, schedule, progress)."""
        return _page("sms.html")

    app.router.add_get("/console/sms", sms_page)
    app.router.add_get("/console/static/{name}", asset)
