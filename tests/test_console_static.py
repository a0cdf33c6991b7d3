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

PAGES = {
    "/console/": "index.html",
    "/console/supervisor": "supervisor.html",
    "/console/calls": "calls.html",
}
SCRIPTS = {"console.js", "supervisor.js", "calls.js", "common.js", "i18n.js"}


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


@pytest.mark.parametrize("path", sorted(PAGES))
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
    assert {p.name for p in scripts} >= SCRIPTS
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in scripts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert offenders == []


def test_console_pages_need_nothing_the_policy_forbids() -> None:
    """No inline script, inline style or on* handler, and nothing from another origin."""
    pages = sorted(p.name for p in STATIC.glob("*.html"))
    assert set(pages) >= set(PAGES.values())
    for page in pages:
        html = (STATIC / page).read_text(encoding="utf-8")
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], page
        assert "<style" not in html, page
        assert re.findall(r"\sstyle=", html) == [], page
        assert re.findall(r"\son[a-z]+=", html) == [], page
        assert re.findall(r'(?:src|href)="(?:https?:)?//', html) == [], page


# ---------------------------------------------------------------- i18n
# A key in the table: four spaces in, inside the zh or en object.
_I18N_KEY = re.compile(r"^ {4}([A-Za-z_][A-Za-z0-9_]*):", re.MULTILINE)
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Functions whose argument at this index is an i18n key (when it is written out).
_KEY_ARGS = {
    "t": 0,
    "tOr": 0,
    "has": 0,
    "tr": 1,
    "sayKey": 1,
    "option": 2,
    "setMode": 2,
    "offerRow": 0,
    "section": 0,
    "replyFailed": 2,
    "playFailed": 0,
}
_KEY_CALL = re.compile(r"(?<![\w$])(" + "|".join(_KEY_ARGS) + r")\(")
_KEY_PROP = re.compile(r"(?<![\w$])i18n(?:Placeholder|Label)?:")
_HTML_KEY = re.compile(r'data-i18n(?:-placeholder|-title|-aria-label)?="([^"]*)"')


def _i18n_tables() -> dict[str, set[str]]:
    text = (STATIC / "i18n.js").read_text(encoding="utf-8")
    zh_at, en_at = text.index("\n  zh: {"), text.index("\n  en: {")
    assert zh_at < en_at
    return {
        "zh": set(_I18N_KEY.findall(text[zh_at:en_at])),
        "en": set(_I18N_KEY.findall(text[en_at:])),
    }


def _args(src: str, start: int) -> list[str]:
    """The comma-separated expressions from src[start] up to the bracket that closes them."""
    args: list[str] = []
    current: list[str] = []
    depth = 0
    quote = ""
    i = start
    while i < len(src):
        ch = src[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < len(src):
                current.append(src[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch in "([{":
            depth += 1
            current.append(ch)
        elif ch in ")]}" and depth == 0:
            break
        elif ch in ")]}":
            depth -= 1
            current.append(ch)
        elif ch == "," and depth == 0:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    args.append("".join(current))
    return args


def _literal_keys(expression: str) -> set[str]:
    """The string literals of an expression, unless it builds a key at run time (+).

    Literals inside a nested call (``t(el.getAttribute("data-i18n"))``) are arguments
    of that call, not keys, so bracketed parts are dropped first.
    """
    while True:
        shorter = re.sub(r"\([^()]*\)", "", expression)
        if shorter == expression:
            break
        expression = shorter
    if "+" in _STRING.sub("", expression):
        return set()
    return set(_STRING.findall(expression))


def _keys_used(src: str) -> set[str]:
    # Comments may name functions in prose ("t() for a key"): drop them first.
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.DOTALL)
    src = re.sub(r"(?m)^\s*//.*$", "", src)
    keys: set[str] = set()
    for call in _KEY_CALL.finditer(src):
        args = _args(src, call.end())
        index = _KEY_ARGS[call.group(1)]
        if index < len(args):
            keys |= _literal_keys(args[index])
    for prop in _KEY_PROP.finditer(src):
        keys |= _literal_keys(_args(src, prop.end())[0])
    return keys


def test_i18n_tables_have_the_same_keys_in_both_languages() -> None:
    tables = _i18n_tables()
    assert len(tables["zh"]) > 100
    assert sorted(tables["zh"] ^ tables["en"]) == []


@pytest.mark.parametrize("script", ["console.js", "calls.js", "supervisor.js", "common.js"])
def test_every_i18n_key_a_script_names_exists_in_both_languages(script: str) -> None:
    tables = _i18n_tables()
    used = _keys_used((STATIC / script).read_text(encoding="utf-8"))
    if script in ("console.js", "calls.js"):
        assert len(used) > 10, used  # the scan itself still finds keys
    missing = {lang: sorted(used - keys) for lang, keys in tables.items()}
    assert missing == {"zh": [], "en": []}


def test_every_i18n_key_a_page_names_exists_in_both_languages() -> None:
    tables = _i18n_tables()
    for page in sorted(STATIC.glob("*.html")):
        used = set(_HTML_KEY.findall(page.read_text(encoding="utf-8")))
        assert used, page.name
        for lang, keys in tables.items():
            assert sorted(used - keys) == [], (page.name, lang)


def _js_list(script: str, name: str) -> list[str]:
    src = (STATIC / script).read_text(encoding="utf-8")
    found = re.search(r"var " + name + r" = \[(.*?)\];", src, flags=re.DOTALL)
    assert found, (script, name)
    return _STRING.findall(found.group(1))


@pytest.mark.parametrize(
    ("script", "name", "prefix"),
    [
        ("console.js", "STATES", "state_"),
        ("console.js", "BREAK_REASONS", "reason_"),
        ("console.js", "DISPOSITIONS", "disp_"),
        ("console.js", "TICKET_KINDS", "kind_"),
        ("calls.js", "DISPOSITIONS", "calldisp_"),
    ],
)
def test_values_offered_in_a_list_have_labels(script: str, name: str, prefix: str) -> None:
    tables = _i18n_tables()
    values = _js_list(script, name)
    assert values
    for lang, keys in tables.items():
        assert sorted(prefix + v for v in values if prefix + v not in keys) == [], lang


def test_call_states_and_ivr_steps_of_the_voice_contract_have_labels() -> None:
    """docs/agent-api.md, Voice: the call states and the IVR steps the console names."""
    wanted = {"callstate_" + s for s in ("queued", "ringing", "talking", "survey", "ended")}
    wanted |= {
        "ivr_" + s
        for s in (
            "answered",
            "language",
            "menu",
            "no_input",
            "no_match",
            "case_status",
            "speech",
            "handoff",
            "after_hours",
        )
    }
    for lang, keys in _i18n_tables().items():
        assert sorted(wanted - keys) == [], lang
