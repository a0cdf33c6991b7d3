"""Typed fuzzing of every route: bad bodies, queries and path ids are 4xx, never 5xx.

The routes come from the real app's router, so a new POST/PUT/PATCH/DELETE route fails
``test_every_mutating_route_has_a_valid_body`` until it gets an entry in ``VALID`` (a body
the endpoint accepts, from which the fuzzer learns the fields it reads). Then, on SQLite
and PostgreSQL, signed in with the CSRF header, each route gets:

* malformed JSON (truncated, bad UTF-8, nesting deep enough to exhaust the parser), and
  JSON that is not an object (list, string, number, null);
* its valid body with each field, at every depth, replaced in turn by each of
  ``tests.hostile.hostile_values()`` (wrong types, huge numbers, a 100,000-character
  string, lone surrogates, NUL);
* its valid body against bogus path ids (unknown, over-long, NUL, invalid UTF-8).

Path ids are real records made for the test (a user, org units, a queue, a conversation,
a canned reply), so each request gets past the lookup to the field checks. Afterwards
the server still answers /healthz with its database up.

Every GET route likewise needs an entry in ``GET_ROUTES`` (the query parameters it reads,
with valid values). Each gets its valid query, then each parameter (and one it does not
know) replaced in turn by each of ``HOSTILE_QUERY`` (NUL, invalid UTF-8, control
characters, digits ``int()`` refuses, 5,000 characters), and its path id replaced by each
of ``HOSTILE_PATH``: never a 5xx, on both databases.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from hotline.config import Settings
from hotline.web import create_app
from tests.hostile import hostile_values
from tests.staff import StaffClient
from tests.test_admin_api import ADMIN_PASSWORD, PASSWORD, conversation_in

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BOGUS_IDS = ("no-such-id", "x" * 300, "%00", "%ED%A0%80", "..%2F..%2Fetc", "9" * 30)
MALFORMED: tuple[bytes, ...] = (
    b"",
    b"{",
    b'{"a": }',
    b"\xff\xfe{}",
    b"[" * 20_000 + b"]" * 20_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b"NaN",
    b"9" * 5_000,
    b"[]",
    b'"text"',
    b"1",
    b"null",
)


@dataclass(frozen=True)
class Valid:
    """Bodies the route accepts, and who sends them (a role that gets past its checks)."""

    bodies: tuple[Any, ...] = ()  # empty: the route reads no body
    who: str = "admin"  # or "agent"
    # Routes whose valid body is refused by design in this setup (say, a call transfer on
    # a chat): the fields are still type-checked before that.
    may_refuse: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SCHEDULE = [{"weekdays": [0, 1, 2], "start": "08:30", "end": "17:30"}]

# (method, path template) -> valid bodies. {agent}, {conv}... are filled in per test;
# {fresh} is a new id on every request, so a create gets past "exists" to every field.
VALID: dict[tuple[str, str], Valid] = {
    ("POST", "/api/login"): Valid(({"username": "admin", "password": "not-the-password-1"},)),
    ("POST", "/api/logout"): Valid(),
    ("POST", "/api/users"): Valid(
        (
            {
                "username": "{fresh}",
                "password": PASSWORD,
                "role": "agent",
                "org_unit": "default",
                "display_name": "Fuzzed",
                "capacity": 2,
            },
        )
    ),
    ("PATCH", "/api/users/{id}"): Valid(
        (
            {
                "role": "agent",
                "org_unit": "default",
                "display_name": "Agent F",
                "capacity": 3,
                "active": True,
                "password": PASSWORD,
            },
        )
    ),
    ("DELETE", "/api/users/{id}"): Valid(),
    ("POST", "/api/users/{id}/phone"): Valid(),
    ("POST", "/api/org-units"): Valid(({"id": "{fresh}", "name": "New", "parent_id": "default"},)),
    ("PATCH", "/api/org-units/{id}"): Valid(({"name": "Renamed", "parent_id": "default"},)),
    ("DELETE", "/api/org-units/{id}"): Valid(),
    ("POST", "/api/queues"): Valid(
        (
            {
                "id": "{fresh}",
                "name": "New queue",
                "org_unit_id": "default",
                "strategy": "linear",
                "language": "zh",
                "intents": ["report_crime", "complaint"],
                "overflow_to": "general",
                "overflow_after": 60,
                "max_wait": 600,
                "offer_timeout": 30,
                "wrap_up": 10,
                "sticky_window": 0,
                "is_default": False,
            },
        )
    ),
    ("PATCH", "/api/queues/{id}"): Valid(
        (
            {
                "name": "Fuzz queue",
                "org_unit_id": "default",
                "strategy": "round_robin",
                "language": "en",
                "intents": ["report_crime"],
                "overflow_to": "general",
                "overflow_after": 30,
                "max_wait": 300,
                "offer_timeout": 20,
                "wrap_up": 0,
                "sticky_window": 60,
                "is_default": False,
            },
        )
    ),
    ("DELETE", "/api/queues/{id}"): Valid(),
    ("PUT", "/api/queues/{id}/members"): Valid(
        (
            {"members": [{"user_id": "{agent}", "penalty": 1, "schedule": SCHEDULE}]},
            [{"user_id": "{agent}", "penalty": 0, "schedule": None}],
        )
    ),
    ("POST", "/api/blacklist"): Valid(
        (
            {"conversation_id": "{conv}", "reason": "abusive caller"},
            {"contact_id": "{contact}", "reason": "abusive caller"},
        )
    ),
    ("DELETE", "/api/blacklist/{contact_id}"): Valid(),
    # The other conversation's contact is this one: refused (409) after the checks.
    ("POST", "/api/contacts/{contact_id}/links"): Valid(({"conversation_id": "{conv}"},)),
    ("DELETE", "/api/contacts/{contact_id}/link"): Valid(),
    ("POST", "/api/canned"): Valid(
        ({"language": "zh", "title": "问候", "text": "您好\n请讲", "org_unit_id": "default"},)
    ),
    ("DELETE", "/api/canned/{id}"): Valid(),
    ("POST", "/api/conversations/{id}/identity"): Valid(),
    ("POST", "/api/conversations/{id}/accept"): Valid(),
    ("POST", "/api/conversations/{id}/reject"): Valid(),
    ("POST", "/api/conversations/{id}/messages"): Valid(({"text": "您好", "id": "m-1"},)),
    ("POST", "/api/conversations/{id}/transfer"): Valid(
        (
            {"queue_id": "general", "note": "caller prefers English"},
            {"agent_id": "{agent}", "note": "over to you"},
            {"number": "+865550100", "note": "outside"},  # a chat: refused after the checks
        ),
        may_refuse=True,
    ),
    ("POST", "/api/conversations/{id}/hangup"): Valid(),
    ("POST", "/api/conversations/{id}/reassign"): Valid(({"agent_id": "{agent}"},)),
    ("POST", "/api/conversations/{id}/vip"): Valid(({"vip": True},)),
    ("POST", "/api/conversations/{id}/close"): Valid(({"disposition": "resolved"},)),
    ("POST", "/api/conversations/{id}/ticket"): Valid(
        ({"kind": "report", "fields": {"summary": "县财政局", "details": "收受贿赂"}},)
    ),
    ("PATCH", "/api/conversations/{id}/ticket"): Valid(
        ({"fields": {"summary": "更正"}, "status": "under_review"},)
    ),
    ("POST", "/api/agents/me/status"): Valid(({"status": "break", "reason": "meal"},), who="agent"),
    ("POST", "/api/supervisor/agents/{id}/status"): Valid(({"status": "break", "reason": "meal"},)),
}

# Which real record fills a route's path parameter.
PATH_IDS: dict[str, str] = {
    "/api/users/{id}": "agent",
    "/api/users/{id}/phone": "agent",
    "/api/org-units/{id}": "unit",
    "/api/queues/{id}": "queue",
    "/api/queues/{id}/members": "queue",
    "/api/blacklist/{contact_id}": "contact",
    "/api/contacts/{contact_id}/links": "contact",
    "/api/contacts/{contact_id}/link": "contact",
    "/api/canned/{id}": "canned",
    "/api/supervisor/agents/{id}/status": "agent",
}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route of the app."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        assert path, route
        found.add((route.method, str(path)))
    return found


def mutating_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(method, path) for method, path in _routes(app) if method in MUTATING}


def test_every_mutating_route_has_a_valid_body(base_settings: Settings) -> None:
    """A new mutating route (or a renamed one) must be added to VALID to be fuzzed."""
    routes = mutating_routes(create_app(base_settings))
    assert routes - set(VALID) == set(), "add these routes to VALID in tests/test_api_fuzz.py"
    assert set(VALID) - routes == set(), "these routes are gone: remove them from VALID"
    # Every path parameter is filled with a real record.
    for _method, path in routes:
        if "{" in path and not path.startswith("/api/conversations/"):
            assert path in PATH_IDS, path


def variants(body: Any) -> Iterator[tuple[str, Any]]:
    """(where, body) with one value at any depth replaced by each hostile value."""

    def paths(node: Any, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            yield (*prefix, key)
            if isinstance(child, dict | list) and child:
                yield from paths(child, (*prefix, key))

    if not isinstance(body, dict | list):
        return
    for where in paths(body, ()):
        for value in hostile_values():
            mutated = copy.deepcopy(body)
            node = mutated
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value
            yield ".".join(map(str, where)), mutated


def fresh(value: Any) -> Any:
    """``"{fresh}"`` replaced by a new id (valid for users, org units and queues)."""
    if value == "{fresh}":
        return "fz" + uuid.uuid4().hex[:12]
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh(v) for v in value]
    return value


def fill(value: Any, ids: dict[str, str]) -> Any:
    """``"{agent}"`` and friends replaced by real ids, anywhere in a body."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids.get(value[1:-1], value)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    admin_settings = replace(settings, admin_password=ADMIN_PASSWORD)
    srv = TestServer(create_app(admin_settings), host="127.0.0.1", port=settings.http_port)
    await srv.start_server()
    yield srv
    await srv.close()


class Fuzzer:
    def __init__(self, clients: dict[str, StaffClient]) -> None:
        self.clients = clients
        self.sent = 0
        self.failures: list[str] = []

    async def send(self, who: str, method: str, path: str, raw: bytes, label: str) -> int:
        client = self.clients[who]
        headers = {"X-CSRF-Token": client.csrf, "Content-Type": "application/json"}
        async with client.http.request(
            method, client.base_url + path, data=raw, headers=headers
        ) as resp:
            await resp.read()
            self.sent += 1
            if resp.status >= 500:
                self.failures.append(f"{resp.status} {method} {path} {label}")
            return resp.status

    async def route(self, method: str, path: str, valid: Valid, who: str | None = None) -> None:
        who = who or valid.who
        for raw in MALFORMED:
            await self.send(who, method, path, raw, f"malformed {raw[:20]!r}")
        for i, body in enumerate(valid.bodies):
            status = await self.send(who, method, path, _encode(fresh(body)), f"valid body {i}")
            if status == 400 and not valid.may_refuse:
                self.failures.append(f"the valid body {i} of {method} {path} was refused")
            for where, mutated in variants(body):
                label = f"{where}={_short(_at(mutated, where))}"
                await self.send(who, method, path, _encode(fresh(mutated)), label)


def _at(body: Any, where: str) -> Any:
    for key in where.split("."):
        body = body[int(key)] if isinstance(body, list) else body[key]
    return body


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 30 else shown[:27] + "..."


def _encode(body: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a browser would send them.
    return json.dumps(body).encode()


def _order(route: tuple[str, str]) -> tuple[int, str, str]:
    """The agent's own route first (later ones sign it out), then the rest, deletions
    next (they remove the records the others need), sign-in and sign-out last."""
    method, path = route
    if VALID[route].who == "agent":
        rank = 0
    elif path in ("/api/login", "/api/logout"):
        rank = 3 if path == "/api/logout" else 2
    else:
        rank = 1 if method == "DELETE" else 0
    return rank, path, method


@dataclass
class Staff:
    """Signed-in clients ("admin", "agent") and the real records path ids are filled with."""

    base: str
    clients: dict[str, StaffClient]
    ids: dict[str, str]

    async def healthy(self) -> None:
        """The server still answers /healthz with its database up."""
        async with self.clients["admin"].http.get(self.base + "/healthz") as resp:
            health = await resp.json()
        assert health["components"]["database"]["status"] == "ok", health


@pytest.fixture
async def staff(server: TestServer, settings: Settings) -> AsyncIterator[Staff]:
    base = str(server.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    clients = {"admin": admin}
    try:
        created = await admin.post(
            "/api/users",
            {"username": "fz-agent", "password": PASSWORD, "role": "agent"},
            expect=201,
        )
        agent_id = created["user"]["id"]
        clients["agent"] = await StaffClient(base).login("fz-agent", PASSWORD)
        await admin.post("/api/org-units", {"id": "fz-unit", "name": "Fuzz unit"}, expect=201)
        await admin.post("/api/queues", {"id": "fz-queue", "name": "Fuzz queue"}, expect=201)
        canned = await admin.post(
            "/api/canned", {"language": "en", "title": "Hi", "text": "Hello"}, expect=201
        )
        conversation_id, contact_id = await conversation_in(settings, "default")
        ids = {
            "agent": agent_id,
            "unit": "fz-unit",
            "queue": "fz-queue",
            "contact": contact_id,
            "canned": str(canned["canned"]["id"]),
            "conv": conversation_id,
        }
        yield Staff(base, clients, ids)
    finally:
        for client in clients.values():
            await client.close()


async def test_mutating_routes_never_answer_5xx(server: TestServer, staff: Staff) -> None:
    ids = staff.ids
    routes = mutating_routes(server.app)
    assert routes == set(VALID)
    fuzzer = Fuzzer(staff.clients)
    for method, template in sorted(routes, key=_order):
        valid = VALID[(method, template)]
        filled = replace(valid, bodies=tuple(fill(b, ids) for b in valid.bodies))
        real = _path(template, ids)
        await fuzzer.route(method, real, filled)
        if "{" in template:
            for bogus in BOGUS_IDS:
                path = _path(template, {k: bogus for k in ids})
                for i, body in enumerate(filled.bodies or ({},)):
                    await fuzzer.send(valid.who, method, path, _encode(body), f"bogus id, body {i}")
                await fuzzer.send(valid.who, method, path, b"[" * 20_000, "bogus id, deep")
    assert fuzzer.failures == [], "\n".join(fuzzer.failures[:50])
    assert fuzzer.sent > 2_000
    await staff.healthy()


# ------------------------------------------------------------------ GET routes
@dataclass(frozen=True)
class Get:
    """The query a GET route reads (valid values), who asks, and what fills its path."""

    query: dict[str, str] = field(default_factory=dict)
    who: str = "admin"
    path_id: str | None = None  # the key in Staff.ids, or a literal value
    # Valid requests answered with a 4xx by design here (voice is off, no upgrade header).
    may_refuse: bool = False
    # 503 is the answer while a component is down (this test starts no Rasa).
    may_be_down: bool = False


# path template -> its query parameters. {agent}, {queue}... are filled per test.
GET_ROUTES: dict[str, Get] = {
    "/": Get(),
    "/widget.js": Get(),
    "/ws/chat": Get(may_refuse=True),
    "/ws/chat/limit": Get(),
    "/healthz": Get(may_be_down=True),
    "/api/kb/search": Get({"q": "举报", "lang": "zh", "limit": "5"}),
    "/api/me": Get(),
    "/api/users": Get(),
    "/api/users/{id}": Get(path_id="agent"),
    "/api/org-units": Get(),
    "/api/queues": Get(),
    "/api/queues/{id}/members": Get(path_id="queue"),
    "/api/blacklist": Get(),
    "/api/canned": Get({"lang": "zh"}),
    "/api/conversations": Get({"state": "queued", "mine": "1", "q": "举报", "limit": "50"}),
    "/api/conversations/{id}": Get(path_id="conv"),
    "/api/agents/me": Get(who="agent"),
    "/api/agents/me/phone": Get(may_refuse=True),
    "/api/supervisor/overview": Get(),
    "/api/calls": Get(
        {
            "from": "2024-01-01T00:00:00",
            "to": "2030-01-01T00:00:00+08:00",
            "agent_id": "{agent}",
            "queue_id": "{queue}",
            "caller": "13800000001",
            "disposition": "completed",
            "limit": "50",
            "offset": "0",
        }
    ),
    "/api/recordings/{id}/audio": Get(path_id="no-such-recording", may_refuse=True),
    "/ws/agent": Get(may_refuse=True),
    "/console": Get(),
    "/console/": Get(),
    "/console/supervisor": Get(),
    "/console/calls": Get(),
    "/console/sms": Get(),
    "/console/static/{name}": Get(path_id="console.js"),
}

# Raw (percent-encoded) values for query parameters and path ids. Invalid UTF-8 arrives
# as U+FFFD (a lone surrogate cannot travel in a URL); NUL arrives as it is.
HOSTILE_QUERY = (
    "",
    "%00",
    "abc%00def",
    "%ED%A0%80",
    "%FF%FE",
    "%C0%80",
    "%0A",
    "%1B%5B31m",
    "%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
    "%EF%BC%91",  # a full-width digit one
    "9" * 5_000,  # int() refuses more than 4,300 digits
    "-1",
    "1e3",
    "x" * 5_000,
    "%25",
    "%27%3B%20DROP%20TABLE%20message%3B%20--",
)
HOSTILE_PATH = (*BOGUS_IDS, "%FF", "%C2%B2", "%0A", "a%00b", "9" * 5_000)

# (route, parameter) still answering 5xx outside the staff API; the test fails once one
# is fixed, so the entry goes too.
KNOWN_5XX: dict[tuple[str, str], str] = {}


def get_routes(app: web.Application) -> set[str]:
    return {path for method, path in _routes(app) if method == "GET"}


def test_every_get_route_has_known_query(base_settings: Settings) -> None:
    """A new GET route (or a renamed one) must be added to GET_ROUTES to be fuzzed."""
    routes = get_routes(create_app(base_settings))
    assert routes - set(GET_ROUTES) == set(), "add these routes to GET_ROUTES"
    assert set(GET_ROUTES) - routes == set(), "these routes are gone: remove them"
    for path, spec in GET_ROUTES.items():
        assert ("{" in path) == (spec.path_id is not None), path


def _get_url(base: str, template: str, spec: Get, ids: dict[str, str], **raw: str) -> URL:
    """The route's URL with real ids and the valid query, ``raw`` values (encoded) over it."""
    path = template
    if spec.path_id is not None:
        value = raw.pop("_path", None) or quote(ids.get(spec.path_id, spec.path_id), safe="")
        path = re.sub(r"\{[a-z_]+\}", value, template)
    query = {k: quote(fill(v, ids), safe="") for k, v in spec.query.items()}
    query.update(raw)
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return URL(base + path + ("?" + text if text else ""), encoded=True)


async def test_get_routes_never_answer_5xx(server: TestServer, staff: Staff) -> None:
    """Each GET route, its valid query with each parameter in turn (and an unknown one)
    replaced by each hostile value, and its path id replaced by bogus ones: never a 5xx."""
    assert get_routes(server.app) == set(GET_ROUTES)
    failures: list[str] = []
    known: set[tuple[str, str]] = set()
    sent = 0

    async def send(template: str, url: URL, label: str, name: str = "") -> int:
        nonlocal sent
        spec = GET_ROUTES[template]
        async with staff.clients[spec.who].http.get(url, allow_redirects=False) as resp:
            await resp.read()
        sent += 1
        if resp.status >= 500 and not (resp.status == 503 and spec.may_be_down):
            if (template, name) in KNOWN_5XX:
                known.add((template, name))
            else:
                failures.append(f"{resp.status} GET {url.raw_path_qs[:120]} {label}")
        return resp.status

    for template, spec in sorted(GET_ROUTES.items()):
        status = await send(template, _get_url(staff.base, template, spec, staff.ids), "valid")
        if 400 <= status < 500 and not spec.may_refuse:
            failures.append(f"the valid query of GET {template} was refused: {status}")
        for name in (*spec.query, "zz"):
            for value in HOSTILE_QUERY:
                url = _get_url(staff.base, template, spec, staff.ids, **{name: value})
                await send(template, url, f"{name}={value[:20]}", name)
        if spec.path_id is not None:
            for bogus in HOSTILE_PATH:
                url = _get_url(staff.base, template, spec, staff.ids, _path=bogus)
                await send(template, url, f"path id {bogus[:20]}")
    assert failures == [], "\n".join(failures[:50])
    assert known == set(KNOWN_5XX), "fixed: remove from KNOWN_5XX " + repr(set(KNOWN_5XX) - known)
    assert sent > 500
    await staff.healthy()


async def test_bad_query_and_path_values_get_the_error_convention(staff: Staff) -> None:
    """What the GET fuzz found (5xx before): now a 400 naming the parameter, or a 404."""
    http = staff.clients["admin"].http
    cases = {
        "/api/conversations?q=a%00b": (400, "bad_request", "q contains control"),
        "/api/conversations?limit=%C2%B2": (400, "bad_request", "limit must be 1-200"),
        "/api/calls?agent_id=%00": (400, "bad_request", "agent_id contains control"),
        "/api/calls?caller=1%0A2": (400, "bad_request", "caller contains control"),
        "/api/calls?offset=" + "9" * 5_000: (400, "bad_request", "offset must be"),
        "/api/recordings/a%00b/audio": (404, "not_found", "no such recording"),
    }
    for path, (status, code, message) in cases.items():
        async with http.get(URL(staff.base + path, encoded=True)) as resp:
            body = await resp.json()
        assert (resp.status, body["error"]) == (status, code), (path, body)
        assert body["message"].startswith(message), (path, body)
    # Times without an offset are UTC; with one, they are converted.
    for when in ("2024-01-01T00:00:00", "2024-01-01T08:00:00%2B08:00"):
        async with http.get(URL(f"{staff.base}/api/calls?from={when}", encoded=True)) as resp:
            assert resp.status == 200, await resp.text()


def _path(template: str, ids: dict[str, str]) -> str:
    if template.startswith("/api/conversations/"):
        return template.replace("{id}", ids["conv"])
    if "{" not in template:
        return template
    key = PATH_IDS[template]
    return template.replace("{id}", ids[key]).replace("{contact_id}", ids[key])


def test_hostile_values_reach_every_field() -> None:
    """The variant generator replaces top-level and nested fields alike."""
    body = {"a": "x", "b": [{"c": "y"}]}
    found = list(variants(body))
    assert {where for where, _ in found} == {"a", "b", "b.0", "b.0.c"}
    assert len(found) == 4 * len(list(hostile_values()))
    assert all(mutated != body for _, mutated in found)
    assert body == {"a": "x", "b": [{"c": "y"}]}  # the valid body itself is left alone
