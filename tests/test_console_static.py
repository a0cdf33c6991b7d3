"""The agent console's pages and scripts: served with a strict CSP, never framed, no HTML sinks.

Fast: no Rasa and no browser. What the pages do is driven in Chromium elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent_console import routes
from hotline.config import Settings

STATIC = Path(routes.__file__).resolve().parent / "static"

# Written out, not imported: weakening the policy in routes.py must fail this test.
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; media-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

# Ways to turn a string into markup; console data is untrusted, so none may appear.
HTML_SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write")


def _has_console(app: web.Application) -> bool:
    return any(r.canonical == "/console/" for r in app.router.resources())


@pytest.fixture
async def console_server(settings: Settings) -> AsyncIterator[TestServer]:
    """The hub app with the console routes (added here until web.py registers them)."""
    from hotline.web import create_app

    app = create_app(settings)
    if not _has_console(app):
        routes.add_routes(app)
    server = TestServer(app, host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    yield server
    await server.close()


async def _get(server: TestServer, path: str) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url(path), allow_redirects=False) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def _assert_locked_down(headers: dict[str, str]) -> None:
    assert headers["Content-Security-Policy"] == EXPECTED_CSP
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/console/", "/console/supervisor"])
async def test_pages_are_served_with_the_strict_policy(
    console_server: TestServer, path: str
) -> None:
    status, headers, body = await _get(console_server, path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    _assert_locked_down(headers)
    assert 'data-testid="login-username"' in body
    # Every script and stylesheet a page names is served, as the right type.
    assets = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', body)
    assert assets
    for asset in assets:
        status, headers, _ = await _get(console_server, asset)
        assert status == 200, asset
        kind = "text/javascript" if asset.endswith(".js") else "text/css"
        assert headers["Content-Type"].startswith(kind), asset
        _assert_locked_down(headers)


async def test_short_url_redirects_and_unknown_files_are_not_served(
    console_server: TestServer,
) -> None:
    status, headers, _ = await _get(console_server, "/console")
    assert status in (301, 302, 307, 308)
    assert headers["Location"] == "/console/"
    for path in (
        "/console/static/nope.js",
        "/console/static/index.html",  # pages only under their own URLs
        "/console/static/..%2Froutes.py",
        "/console/static/%2e%2e/__init__.py",
    ):
        status, _, _ = await _get(console_server, path)
        assert status == 404, path


def test_console_scripts_never_parse_strings_as_html() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert {p.name for p in scripts} >= {"console.js", "supervisor.js", "common.js", "i18n.js"}
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in scripts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert offenders == []


def test_console_pages_need_nothing_the_policy_forbids() -> None:
    """No inline script, inline style or on* handler, and nothing from another origin."""
    for page in ("index.html", "supervisor.html"):
        html = (STATIC / page).read_text(encoding="utf-8")
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], page
        assert "<style" not in html, page
        assert re.findall(r"\sstyle=", html) == [], page
        assert re.findall(r"\son[a-z]+=", html) == [], page
        assert re.findall(r'(?:src|href)="(?:https?:)?//', html) == [], page
