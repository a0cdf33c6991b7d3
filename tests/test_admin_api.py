"""The administration API: roles, org-unit scope, validation, and what each change does.

Runs against the real app on SQLite and PostgreSQL. Conversations (for the blacklist)
are written straight into the database: no Rasa and no chat needed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.acd.service import AcdService
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AgentStatus, Contact, Conversation, QueueMember
from hotline.web import create_app
from tests.staff import StaffClient

ADMIN_PASSWORD = "admin-password-for-tests"
PASSWORD = "staff-password-123"

MakeUser = Callable[..., Awaitable[StaffClient]]


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return replace(settings, admin_password=ADMIN_PASSWORD)


@pytest.fixture
async def base(admin_settings: Settings) -> AsyncIterator[str]:
    server = TestServer(create_app(admin_settings), host="127.0.0.1", port=admin_settings.http_port)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def clients(base: str) -> AsyncIterator[list[StaffClient]]:
    made: list[StaffClient] = []
    yield made
    for client in made:
        await client.close()


@pytest.fixture
async def admin(base: str, clients: list[StaffClient]) -> StaffClient:
    client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    clients.append(client)
    return client


@pytest.fixture
def make_user(base: str, admin: StaffClient, clients: list[StaffClient]) -> MakeUser:
    async def make(
        name: str, role: str = "agent", unit: str | None = None, by: StaffClient | None = None
    ) -> StaffClient:
        body: dict[str, Any] = {"username": name, "password": PASSWORD, "role": role}
        if unit is not None:
            body["org_unit"] = unit
        await (by or admin).post("/api/users", body, expect=201)
        client = await StaffClient(base).login(name, PASSWORD)
        clients.append(client)
        return client

    return make


async def in_db(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


async def conversation_in(settings: Settings, unit: str) -> tuple[str, str]:
    """A conversation (and its contact) in ``unit``; returns (conversation_id, contact_id)."""

    async def work(session: Any) -> tuple[str, str]:
        contact = Contact(channel="webchat", external_id=uuid.uuid4().hex)
        session.add(contact)
        await session.flush()
        conversation = Conversation(contact_id=contact.id, channel="webchat", org_unit_id=unit)
        session.add(conversation)
        await session.flush()
        return conversation.id, contact.id

    result: tuple[str, str] = await in_db(settings, work)
    return result


async def units(admin: StaffClient, *specs: tuple[str, str]) -> None:
    for unit_id, parent in specs:
        await admin.post(
            "/api/org-units",
            {"id": unit_id, "name": unit_id.upper(), "parent_id": parent},
            expect=201,
        )


# ------------------------------------------------------------------ users
async def test_user_crud_and_new_agents_join_the_default_queue(
    admin: StaffClient, make_user: MakeUser, admin_settings: Settings
) -> None:
    agent = await make_user("agent1")
    await make_user("boss1", role="supervisor")
    await make_user("editor1", role="editor")
    members = (await admin.get("/api/queues/general/members"))["members"]
    assert [m["username"] for m in members] == ["agent1", "boss1"]
    assert [m["position"] for m in members] == [0, 1]
    statuses = await in_db(
        admin_settings,
        lambda s: _rows(s, select(AgentStatus.user_id, AgentStatus.presence)),
    )
    assert (agent.user["id"], "offline") in statuses and len(statuses) == 2

    listing = (await admin.get("/api/users"))["users"]
    assert [u["username"] for u in listing] == ["admin", "agent1", "boss1", "editor1"]
    path = f"/api/users/{agent.user['id']}"
    one = (await admin.get(path))["user"]
    assert one["capacity"] == 3 and one["active"] is True and "password_hash" not in one
    _, changed = await admin.call(
        "PATCH", path, {"display_name": "小王", "capacity": 5, "role": "supervisor"}
    )
    assert changed["user"]["display_name"] == "小王" and changed["user"]["capacity"] == 5
    _, taken = await admin.call(
        "POST",
        "/api/users",
        {"username": "agent1", "password": PASSWORD, "role": "agent"},
        expect=409,
    )
    assert taken["error"] == "exists"


async def _rows(session: Any, query: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await session.execute(query)).all()]


async def test_deactivation_ends_sessions_and_sign_in(
    admin: StaffClient, make_user: MakeUser, base: str
) -> None:
    agent = await make_user("leaver")
    _, body = await admin.call("DELETE", f"/api/users/{agent.user['id']}")
    assert body["user"]["active"] is False
    status, _ = await agent.call("GET", "/api/me", expect=None)
    assert status == 401
    again = StaffClient(base)
    async with again.http.post(
        f"{base}/api/login", json={"username": "leaver", "password": PASSWORD}
    ) as resp:
        assert resp.status == 401
    await again.close()
    await admin.call("PATCH", f"/api/users/{agent.user['id']}", {"active": True})
    back = await StaffClient(base).login("leaver", PASSWORD)
    await back.close()


async def test_password_change_signs_the_user_out_elsewhere(
    admin: StaffClient, make_user: MakeUser, base: str
) -> None:
    agent = await make_user("rotator")
    await admin.call("PATCH", f"/api/users/{agent.user['id']}", {"password": "brand-new-pass-1"})
    assert (await agent.call("GET", "/api/me", expect=None))[0] == 401
    fresh = await StaffClient(base).login("rotator", "brand-new-pass-1")
    await fresh.close()
    # Changing your own password keeps your current session.
    await admin.call("PATCH", f"/api/users/{admin.user['id']}", {"password": "admin-new-pass-1"})
    assert (await admin.call("GET", "/api/me"))[0] == 200


async def test_admins_cannot_lock_themselves_out(admin: StaffClient) -> None:
    path = f"/api/users/{admin.user['id']}"
    for body in ({"role": "agent"}, {"active": False}, {"org_unit": "nowhere"}):
        _, answer = await admin.call("PATCH", path, body, expect=409)
        assert answer["error"] == "self"
    assert (await admin.call("DELETE", path, expect=409))[1]["error"] == "self"
    await admin.call("PATCH", path, {"role": "admin", "display_name": "Root"})  # no-op role: fine


async def test_roles(admin: StaffClient, make_user: MakeUser) -> None:
    agent = await make_user("plainagent")
    boss = await make_user("theboss", role="supervisor")
    for method, path, body in (
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"username": "x1x", "password": PASSWORD, "role": "agent"}),
        ("GET", "/api/org-units", None),
        ("POST", "/api/org-units", {"id": "u1", "name": "U1"}),
        ("PATCH", "/api/queues/general", {"max_wait": 5}),
        ("DELETE", f"/api/users/{boss.user['id']}", None),
        ("GET", "/api/blacklist", None),
        ("POST", "/api/canned", {"language": "zh", "title": "t", "text": "x"}),
    ):
        status, answer = await agent.call(method, path, body, expect=None)
        assert (status, answer["error"]) == (403, "forbidden"), (method, path)
    # Supervisors read the configuration but do not change it.
    for path in ("/api/users", "/api/org-units", "/api/queues", "/api/queues/general/members"):
        assert (await boss.call("GET", path))[0] == 200
    status, _ = await boss.call("POST", "/api/org-units", {"id": "u2", "name": "U2"}, expect=None)
    assert status == 403
    status, _ = await boss.call("PATCH", "/api/queues/general", {"max_wait": 5}, expect=None)
    assert status == 403
    assert (await agent.call("GET", "/api/canned"))[0] == 200
    # Agents may list queues: they choose transfer targets from them.
    assert "general" in [q["id"] for q in (await agent.get("/api/queues"))["queues"]]


# ------------------------------------------------------------------ scope
async def test_city_admin_sees_only_its_subtree(admin: StaffClient, make_user: MakeUser) -> None:
    await units(admin, ("city-a", "default"), ("city-b", "default"), ("district-a1", "city-a"))
    city_admin = await make_user("cityadmin", role="admin", unit="city-a")
    prov = await make_user("provagent")
    sibling = await make_user("bagent", unit="city-b")
    local = await make_user("aagent", unit="district-a1")

    names = [u["username"] for u in (await city_admin.get("/api/users"))["users"]]
    assert names == ["aagent", "cityadmin"]
    for other in (prov, sibling):
        path = f"/api/users/{other.user['id']}"
        for method, body in (("GET", None), ("PATCH", {"capacity": 1}), ("DELETE", None)):
            status, answer = await city_admin.call(method, path, body, expect=None)
            assert (status, answer["error"]) == (404, "not_found"), (method, other.user)
    assert (await city_admin.call("PATCH", f"/api/users/{local.user['id']}", {"capacity": 2}))[
        0
    ] == 200
    # Nor can it place people outside its subtree, or move one there.
    status, answer = await city_admin.call(
        "POST",
        "/api/users",
        {"username": "sneaky", "password": PASSWORD, "role": "agent", "org_unit": "city-b"},
        expect=400,
    )
    assert "org_unit" in answer["message"]
    await city_admin.call(
        "PATCH", f"/api/users/{local.user['id']}", {"org_unit": "default"}, expect=400
    )
    # Without org_unit a new user lands in the admin's own unit.
    _, made = await city_admin.call(
        "POST",
        "/api/users",
        {"username": "newa", "password": PASSWORD, "role": "agent"},
        expect=201,
    )
    assert made["user"]["org_unit_id"] == "city-a"

    unit_ids = [u["id"] for u in (await city_admin.get("/api/org-units"))["org_units"]]
    assert unit_ids == ["city-a", "district-a1"]
    await city_admin.call("PATCH", "/api/org-units/city-b", {"name": "x"}, expect=404)
    await city_admin.call("DELETE", "/api/org-units/default", expect=404)
    assert (await city_admin.get("/api/queues"))["queues"] == []
    await city_admin.call("PATCH", "/api/queues/general", {"max_wait": 5}, expect=404)
    await city_admin.call("GET", "/api/queues/general/members", expect=404)
    # The root admin sees everything.
    assert len((await admin.get("/api/org-units"))["org_units"]) == 4


async def test_org_unit_tree_rules(admin: StaffClient, make_user: MakeUser) -> None:
    await units(admin, ("city-a", "default"), ("district-a1", "city-a"))
    for parent in ("district-a1", "city-a"):  # below itself, or itself: a cycle
        _, answer = await admin.call(
            "PATCH", "/api/org-units/city-a", {"parent_id": parent}, expect=400
        )
        assert "cycle" in answer["message"]
    await admin.call("PATCH", "/api/org-units/default", {"parent_id": "city-a"}, expect=400)
    await admin.call("POST", "/api/org-units", {"id": "city-a", "name": "again"}, expect=409)
    await admin.call(
        "POST", "/api/org-units", {"id": "orphan", "name": "O", "parent_id": "nope"}, expect=400
    )
    # Deleting needs an empty unit: no children, users, queues, replies, conversations.
    assert (await admin.call("DELETE", "/api/org-units/city-a", expect=409))[1]["error"] == "in_use"
    await make_user("dweller", unit="district-a1")
    await admin.call("DELETE", "/api/org-units/district-a1", expect=409)
    await units(admin, ("city-b", "default"))
    await admin.call("PATCH", "/api/org-units/city-b", {"name": "B市", "parent_id": "city-a"})
    tree = {u["id"]: u["parent_id"] for u in (await admin.get("/api/org-units"))["org_units"]}
    assert tree["city-b"] == "city-a"
    await admin.call("DELETE", "/api/org-units/city-b")
    await admin.call("DELETE", "/api/org-units/city-b", expect=404)


# ------------------------------------------------------------------ queues
async def test_queue_rules(admin: StaffClient, make_user: MakeUser) -> None:
    full = {
        "id": "complaints-zh",
        "name": "投诉",
        "org_unit_id": "default",
        "strategy": "round_robin",
        "language": "zh",
        "intents": ["file_complaint", "appeal"],
        "overflow_to": "general",
        "overflow_after": 60,
        "max_wait": 600,
        "offer_timeout": 20,
        "wrap_up": 10,
        "sticky_window": 3600,
    }
    _, made = await admin.call("POST", "/api/queues", full, expect=201)
    assert made["queue"]["intents"] == ["appeal", "file_complaint"]
    assert made["queue"]["is_default"] is False
    await admin.call("POST", "/api/queues", {"id": "complaints-zh", "name": "x"}, expect=409)
    _, minimal = await admin.call(
        "POST", "/api/queues", {"id": "en-desk", "name": "EN"}, expect=201
    )
    assert minimal["queue"]["strategy"] == "longest_idle"
    assert minimal["queue"]["org_unit_id"] == "default"

    # Overflow: not to itself, not in a loop.
    await admin.call("PATCH", "/api/queues/en-desk", {"overflow_to": "en-desk"}, expect=400)
    await admin.call("PATCH", "/api/queues/general", {"overflow_to": "complaints-zh"}, expect=400)
    await admin.call("PATCH", "/api/queues/en-desk", {"overflow_to": "nope"}, expect=400)
    await admin.call("PATCH", "/api/queues/en-desk", {"overflow_to": "complaints-zh"})
    # Nothing may vanish from under an overflow, nor the last default queue.
    assert (await admin.call("DELETE", "/api/queues/complaints-zh", expect=409))[1][
        "error"
    ] == "in_use"
    assert (await admin.call("DELETE", "/api/queues/general", expect=409))[1][
        "error"
    ] == "last_default"
    await admin.call("PATCH", "/api/queues/general", {"is_default": False}, expect=409)
    await admin.call("PATCH", "/api/queues/en-desk", {"is_default": True})
    await admin.call("PATCH", "/api/queues/general", {"is_default": False})
    # New agents now join the new default queue.
    await make_user("joiner")
    members = (await admin.get("/api/queues/en-desk/members"))["members"]
    assert [m["username"] for m in members] == ["joiner"]
    await admin.call("PATCH", "/api/queues/en-desk", {"overflow_to": None})
    await admin.call("DELETE", "/api/queues/complaints-zh")
    ids = [q["id"] for q in (await admin.get("/api/queues"))["queues"]]
    assert ids == ["en-desk", "general"]


async def test_queue_members(
    admin: StaffClient, make_user: MakeUser, admin_settings: Settings
) -> None:
    one = await make_user("member1")
    two = await make_user("member2")
    editor = await make_user("writer", role="editor")
    await admin.post("/api/queues", {"id": "night", "name": "Night"}, expect=201)
    body = [
        {
            "user_id": two.user["id"],
            "penalty": 2,
            "schedule": [{"weekdays": [5, 0, 0], "start": "18:00", "end": "24:00"}],
        },
        {"user_id": one.user["id"]},
    ]
    _, put = await admin.call("PUT", "/api/queues/night/members", body)
    got = (await admin.get("/api/queues/night/members"))["members"]
    assert got == put["members"]
    assert [(m["username"], m["position"], m["penalty"]) for m in got] == [
        ("member2", 0, 2),
        ("member1", 1, 0),
    ]
    assert got[0]["schedule"] == [{"weekdays": [0, 5], "start": "18:00", "end": "24:00"}]
    # What GET returns can be PUT back as is (wrapped or bare).
    await admin.call("PUT", "/api/queues/night/members", {"members": got})
    for bad in (
        [{"user_id": one.user["id"]}, {"user_id": one.user["id"]}],
        [{"user_id": editor.user["id"]}],
        [{"user_id": "no-such-user"}],
        [{"user_id": one.user["id"], "penalty": -1}],
        [{"user_id": one.user["id"], "penalty": True}],
        [{"user_id": one.user["id"], "schedule": {"weekdays": [1]}}],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": [7], "start": "09:00", "end": "17:00"}],
            }
        ],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": [], "start": "09:00", "end": "17:00"}],
            }
        ],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": [1], "start": "9:00", "end": "17:00"}],
            }
        ],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": [1], "start": "17:00", "end": "09:00"}],
            }
        ],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": [1], "start": "25:00", "end": "26:00"}],
            }
        ],
        [
            {
                "user_id": one.user["id"],
                "schedule": [{"weekdays": ["1"], "start": "09:00", "end": "17:00"}],
            }
        ],
        [{"user_id": one.user["id"], "extra": 1}],
        ["not-an-object"],
        {"members": "x"},
        {"other": []},
    ):
        _, answer = await admin.call("PUT", "/api/queues/night/members", bad, expect=400)
        assert answer["error"] == "bad_request", bad
    await admin.call("PUT", "/api/queues/nope/members", [], expect=404)
    await admin.call("PUT", "/api/queues/night/members", [])
    rows = await in_db(
        admin_settings,
        lambda s: _rows(s, select(QueueMember.user_id).where(QueueMember.queue_id == "night")),
    )
    assert rows == []


# ------------------------------------------------------------------ blacklist, canned
async def test_blacklist(admin: StaffClient, make_user: MakeUser, admin_settings: Settings) -> None:
    await units(admin, ("city-a", "default"))
    city_boss = await make_user("cityboss", role="supervisor", unit="city-a")
    agent = await make_user("bl-agent")
    province_conv, province_contact = await conversation_in(admin_settings, "default")
    city_conv, city_contact = await conversation_in(admin_settings, "city-a")

    await agent.call(
        "POST", "/api/blacklist", {"conversation_id": city_conv, "reason": "abuse"}, expect=403
    )
    # Out of the supervisor's units: as if it did not exist.
    for body in (
        {"conversation_id": province_conv, "reason": "abuse"},
        {"contact_id": province_contact, "reason": "abuse"},
    ):
        assert (await city_boss.call("POST", "/api/blacklist", body, expect=404))[1][
            "error"
        ] == "not_found"
    _, added = await city_boss.call(
        "POST", "/api/blacklist", {"conversation_id": city_conv, "reason": "辱骂"}, expect=201
    )
    assert added["entry"]["contact_id"] == city_contact
    assert added["entry"]["created_by"] == "cityboss"
    await admin.call(
        "POST", "/api/blacklist", {"contact_id": city_contact, "reason": "again"}, expect=409
    )
    await admin.call(
        "POST", "/api/blacklist", {"contact_id": province_contact, "reason": "spam"}, expect=201
    )
    mine = [e["contact_id"] for e in (await city_boss.get("/api/blacklist"))["blacklist"]]
    assert mine == [city_contact]
    assert len((await admin.get("/api/blacklist"))["blacklist"]) == 2
    await city_boss.call("DELETE", f"/api/blacklist/{province_contact}", expect=404)
    await city_boss.call("DELETE", f"/api/blacklist/{city_contact}")
    await city_boss.call("DELETE", f"/api/blacklist/{city_contact}", expect=404)
    for bad in (
        {"reason": "no target"},
        {"contact_id": city_contact, "conversation_id": city_conv, "reason": "both"},
        {"contact_id": city_contact},
        {"contact_id": city_contact, "reason": "x" * 201},
        {"contact_id": 5, "reason": "x"},
    ):
        await admin.call("POST", "/api/blacklist", bad, expect=400)


async def test_canned_replies(admin: StaffClient, make_user: MakeUser) -> None:
    await units(admin, ("city-a", "default"), ("city-b", "default"))
    a_boss = await make_user("aboss", role="supervisor", unit="city-a")
    a_agent = await make_user("aworker", unit="city-a")
    await admin.post("/api/canned", {"language": "zh", "title": "问候", "text": "您好"}, expect=201)
    await admin.post(
        "/api/canned",
        {"language": "en", "title": "Hello", "text": "Hello,\nhow can I help?"},
        expect=201,
    )
    await admin.post(
        "/api/canned",
        {"language": "zh", "title": "B市地址", "text": "B", "org_unit_id": "city-b"},
        expect=201,
    )
    _, mine = await a_boss.call(
        "POST", "/api/canned", {"language": "zh", "title": "A市地址", "text": "A"}, expect=201
    )
    assert mine["canned"]["org_unit_id"] == "city-a"
    await a_agent.call(
        "POST", "/api/canned", {"language": "zh", "title": "t", "text": "x"}, expect=403
    )

    seen = {c["title"] for c in (await a_agent.get("/api/canned?lang=zh"))["canned"]}
    assert seen == {"问候", "A市地址"}  # own unit and the province above, not city B
    assert [c["title"] for c in (await a_agent.get("/api/canned?lang=en"))["canned"]] == ["Hello"]
    await a_agent.call("GET", "/api/canned?lang=fr", expect=400)
    province_id = next(
        c["id"] for c in (await a_agent.get("/api/canned"))["canned"] if c["title"] == "问候"
    )
    await a_boss.call("DELETE", f"/api/canned/{province_id}", expect=404)
    await a_boss.call("DELETE", f"/api/canned/{mine['canned']['id']}")
    await a_boss.call("DELETE", "/api/canned/not-a-number", expect=404)
    await a_boss.call(
        "POST",
        "/api/canned",
        {"language": "zh", "title": "x", "text": "y", "org_unit_id": "city-b"},
        expect=400,
    )


# ------------------------------------------------------------------ garbage in
GARBAGE: list[tuple[str, str, Any]] = [
    # (method, path, body: str = raw bytes as text, anything else = JSON)
    ("POST", "/api/users", "not json"),
    ("POST", "/api/users", ""),
    ("POST", "/api/users", "[1, 2]"),
    ("POST", "/api/users", "[" * 100_000 + "]" * 100_000),
    ("POST", "/api/users", "\udcff"),
    ("POST", "/api/users", {"username": 5, "password": PASSWORD, "role": "agent"}),
    ("POST", "/api/users", {"username": "ok_name", "password": "short", "role": "agent"}),
    ("POST", "/api/users", {"username": "ok_name", "password": 123456789012, "role": "agent"}),
    ("POST", "/api/users", {"username": "Bad Name", "password": PASSWORD, "role": "agent"}),
    ("POST", "/api/users", {"username": "x" * 33, "password": PASSWORD, "role": "agent"}),
    ("POST", "/api/users", {"username": "ok_name", "password": PASSWORD, "role": "root"}),
    ("POST", "/api/users", {"username": "ok_name", "password": PASSWORD, "role": ["agent"]}),
    ("POST", "/api/users", {"username": "ok_name", "password": PASSWORD}),
    ("POST", "/api/users", {"username": "ok_name", "password": PASSWORD, "role": "agent", "x": 1}),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "capacity": 11},
    ),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "capacity": "3"},
    ),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "org_unit": "nope"},
    ),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "display_name": "x" * 101},
    ),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "display_name": "a\x00b"},
    ),
    (
        "POST",
        "/api/users",
        {"username": "ok_name", "password": PASSWORD, "role": "agent", "display_name": "\ud800"},
    ),
    ("POST", "/api/org-units", {"id": "ok", "name": "\udfff"}),
    ("PATCH", "/api/users/{admin}", {"capacity": 0}),
    ("PATCH", "/api/users/{admin}", {"capacity": True}),
    ("PATCH", "/api/users/{admin}", {"active": "yes"}),
    ("PATCH", "/api/users/{admin}", {"password": "x" * 5}),
    ("PATCH", "/api/users/{admin}", {"username": "renamed"}),
    ("PATCH", "/api/users/{admin}", []),
    ("POST", "/api/login", "garbage"),
    ("POST", "/api/login", {"username": ["admin"], "password": ADMIN_PASSWORD}),
    ("POST", "/api/login", {"username": "admin"}),
    ("POST", "/api/org-units", {"id": "Bad Id", "name": "x"}),
    ("POST", "/api/org-units", {"id": "x" * 65, "name": "x"}),
    ("POST", "/api/org-units", {"id": "ok", "name": ""}),
    ("POST", "/api/org-units", {"id": "ok", "name": "x" * 201}),
    ("POST", "/api/org-units", {"id": "ok", "name": "x", "parent_id": None}),
    ("PATCH", "/api/org-units/default", {"parent_id": 3}),
    ("POST", "/api/queues", {"id": "q1"}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "strategy": "random"}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "language": "fr"}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "intents": "report_crime"}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "intents": ["Bad Intent"]}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "overflow_to": "q1"}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "offer_timeout": 0}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "wrap_up": -1}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "max_wait": 10**30}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "max_wait": 1.5}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "sticky_window": None}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "is_default": 1}),
    ("POST", "/api/queues", {"id": "q1", "name": "Q", "org_unit_id": "nope"}),
    ("PATCH", "/api/queues/general", {"id": "renamed"}),
    ("PATCH", "/api/queues/general", {"overflow_to": "general"}),
    ("POST", "/api/canned", {"language": "zh", "title": "t"}),
    ("POST", "/api/canned", {"language": "zh", "title": "x" * 101, "text": "t"}),
    ("POST", "/api/canned", {"language": "de", "title": "t", "text": "t"}),
    ("POST", "/api/canned", {"language": "zh", "title": "t", "text": "x" * 4001}),
]


async def test_garbage_bodies_are_400(admin: StaffClient, admin_settings: Settings) -> None:
    headers = {"X-CSRF-Token": admin.csrf, "Content-Type": "application/json"}
    for method, path, body in GARBAGE:
        url = admin.base_url + path.replace("{admin}", admin.user["id"])
        raw = (
            body.encode("utf-8", "surrogateescape")
            if isinstance(body, str)
            else json.dumps(body).encode()
        )
        async with admin.http.request(method, url, data=raw, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 400, (method, path, body if len(str(body)) < 200 else "…", answer)
            assert answer["error"] == "bad_request" and answer["message"]
    # Nothing was created along the way, and the server is fine.
    users = [u["username"] for u in (await admin.get("/api/users"))["users"]]
    assert users == ["admin"]
    assert [q["id"] for q in (await admin.get("/api/queues"))["queues"]] == ["general"]


async def test_unknown_ids_in_paths_are_404(admin: StaffClient) -> None:
    for method, path in (
        ("GET", "/api/users/no-such-id"),
        ("GET", "/api/users/" + "x" * 300),
        ("GET", "/api/users/%00"),
        ("PATCH", "/api/org-units/%00"),
        ("DELETE", "/api/queues/nope"),
        ("GET", "/api/queues/%E2%80%AE/members"),
        ("DELETE", "/api/blacklist/nope"),
        ("DELETE", "/api/canned/99999999999999999999"),
    ):
        status, answer = await admin.call(
            method, path, {} if method == "PATCH" else None, expect=None
        )
        assert (status, answer["error"]) == (404, "not_found"), path


async def test_every_change_reloads_acd(
    admin: StaffClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def reload(self: AcdService) -> None:
        calls.append("reload")

    monkeypatch.setattr(AcdService, "reload", reload)
    await make_user("reloaded")
    await admin.post("/api/org-units", {"id": "u9", "name": "U9"}, expect=201)
    await admin.post("/api/queues", {"id": "q9", "name": "Q9"}, expect=201)
    await admin.call("PUT", "/api/queues/q9/members", [])
    assert len(calls) == 4
