"""Handoff end to end over HTTP and WebSockets: ACD, the agent API and the citizen side.

Rasa is deliberately down here (its URL points at a closed port): a citizen's message
then goes straight to ACD with ``bot_unavailable``, the same path a ``handoff`` command
takes. The dialogue-driven handoff (request_human, collected fields) is in
``test_handoff_dialogue.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Conversation, Message, Ticket
from hotline.web import create_app
from tests.chat import ChatClient
from tests.conftest import free_port
from tests.staff import StaffClient

ADMIN_PASSWORD = "admin-password-for-tests"
PASSWORD = "agent-password-123"


@pytest.fixture
def acd_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
        admin_password=ADMIN_PASSWORD,
        acd_tick_seconds=0.2,
    )


@pytest.fixture
async def server(acd_settings: Settings) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(acd_settings), host="127.0.0.1", port=acd_settings.http_port)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def admin(base: str) -> AsyncIterator[StaffClient]:
    client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    yield client
    await client.close()


async def make_agent(
    admin: StaffClient, base: str, name: str, *, unit: str | None = None, role: str = "agent"
) -> StaffClient:
    body: dict[str, Any] = {"username": name, "password": PASSWORD, "role": role}
    if unit:
        body["org_unit"] = unit
    await admin.post("/api/users", body, expect=201)
    agent = await StaffClient(base).login(name, PASSWORD)
    await agent.connect()
    return agent


async def citizen(base: str, text: str = "我要找人工", unit: str | None = None) -> ChatClient:
    chat = ChatClient(base, unit=unit)
    await chat.connect()
    await chat.say(text)  # Rasa is down: the hub queues the conversation
    return chat


async def frame(chat: ChatClient, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            f = await chat.recv(timeout)
            if f["type"] == kind and all(f.get(k) == v for k, v in match.items()):
                return f


async def rows(settings: Settings, conversation_id: str) -> tuple[Conversation, list[Message]]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            messages = list(
                (
                    await session.execute(
                        select(Message)
                        .where(Message.conversation_id == conversation_id)
                        .order_by(Message.id)
                    )
                ).scalars()
            )
            return conversation, messages
    finally:
        await engine.dispose()


async def test_zero_config_handoff_chat_close_and_rating(
    base: str, admin: StaffClient, acd_settings: Settings
) -> None:
    agent = await make_agent(admin, base, "agent1")
    await agent.post("/api/agents/me/status", {"status": "ready"})
    chat = await citizen(base, "我要反映问题")
    offer = await agent.wait("offer")
    assert offer["conversation_id"] == chat.conversation_id
    assert offer["preview"] == "我要反映问题"
    await chat.send("还有一件事")  # while queued: stored, shown to the agent on accept
    await agent.post(f"/api/conversations/{chat.conversation_id}/accept")
    await frame(chat, "state", state="assigned")
    joined = await frame(chat, "message", **{"from": "system"})
    assert "agent1" in joined["text"]

    detail = await agent.get(f"/api/conversations/{chat.conversation_id}")
    said = [m["text"] for m in detail["transcript"] if m["from"] == "citizen"]
    assert said == ["我要反映问题", "还有一件事"]
    assert detail["conversation"]["state"] == "assigned"
    assert detail["conversation"]["handoff_reason"] == "bot_unavailable"

    await agent.post(
        f"/api/conversations/{chat.conversation_id}/messages", {"text": "您好，请讲"}, expect=201
    )
    reply = await frame(chat, "message", **{"from": "agent"})
    assert reply["text"] == "您好，请讲"
    await chat.send("我的问题是……")
    pushed = await agent.wait("message", lambda f: f["message"]["text"] == "我的问题是……")
    assert pushed["message"]["text"] == "我的问题是……"

    await agent.post(
        f"/api/conversations/{chat.conversation_id}/close", {"disposition": "info_given"}
    )
    await frame(chat, "state", state="closed")
    question = await frame(chat, "message", **{"from": "system"})
    assert [b["payload"] for b in question["buttons"]] == ["/rate_1", "/rate_2", "/rate_3"]
    await chat.say("满意", payload="/rate_2")
    conversation, messages = await rows(acd_settings, chat.conversation_id or "")
    assert conversation.rating == 2
    assert conversation.disposition == "info_given"
    assert conversation.state == "closed"
    assert all(m.handled for m in messages if m.author == "citizen")
    await chat.close()
    await agent.close()


async def test_two_agents_racing_for_one_offer(base: str, admin: StaffClient) -> None:
    a = await make_agent(admin, base, "racer1")
    b = await make_agent(admin, base, "racer2")
    await a.post("/api/agents/me/status", {"status": "ready"})
    chat = await citizen(base)
    await a.wait("offer")
    path = f"/api/conversations/{chat.conversation_id}/accept"
    results = await asyncio.gather(
        a.call("POST", path, {}, expect=None), b.call("POST", path, {}, expect=None)
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409]
    loser = next(body for status, body in results if status == 409)
    assert loser["error"] in ("taken", "not_offered")  # depends on who got in first
    again = await b.call("POST", path, {}, expect=None)
    assert again[0] == 409 and again[1]["error"] == "taken"
    for c in (a, b):
        await c.close()
    await chat.close()


async def test_queue_position_updates_and_offer_timeout_moves_on(
    base: str, admin: StaffClient
) -> None:
    await admin.call("PATCH", "/api/queues/general", {"offer_timeout": 1})
    first = await citizen(base, "第一位")
    second = await citizen(base, "第二位")
    position = await frame(second, "queue")
    assert position["position"] == 2
    sleepy = await make_agent(admin, base, "sleepy")
    await sleepy.post("/api/agents/me/status", {"status": "ready"})
    offer = await sleepy.wait("offer")
    assert offer["conversation_id"] == first.conversation_id  # FIFO
    withdrawn = await sleepy.wait("offer_withdrawn", timeout=5)
    assert withdrawn["reason"] == "timeout"
    awake = await make_agent(admin, base, "awake")
    await awake.post("/api/agents/me/status", {"status": "ready"})
    taken = await awake.wait("offer", lambda f: f["conversation_id"] == first.conversation_id)
    await awake.post(f"/api/conversations/{taken['conversation_id']}/accept")
    moved = await frame(second, "queue", position=1)
    assert moved["eta_seconds"] >= 0
    for c in (sleepy, awake):
        await c.close()
    for chat in (first, second):
        await chat.close()


async def test_transfer_with_note_stays_internal(base: str, admin: StaffClient) -> None:
    await admin.post("/api/queues", {"id": "en-desk", "name": "English desk"}, expect=201)
    one = await make_agent(admin, base, "first")
    two = await make_agent(admin, base, "second")
    await admin.call(
        "PUT", "/api/queues/en-desk/members", [{"user_id": two.user["id"], "penalty": 0}]
    )
    await one.post("/api/agents/me/status", {"status": "ready"})
    chat = await citizen(base)
    await one.wait("offer")
    await one.post(f"/api/conversations/{chat.conversation_id}/accept")
    await two.post("/api/agents/me/status", {"status": "ready"})
    await one.post(
        f"/api/conversations/{chat.conversation_id}/transfer",
        {"queue_id": "en-desk", "note": "caller prefers English"},
    )
    await one.wait("unassigned")
    offer = await two.wait("offer")
    assert offer["queue_id"] == "en-desk"
    await two.post(f"/api/conversations/{chat.conversation_id}/accept")
    detail = await two.get(f"/api/conversations/{chat.conversation_id}")
    notes = [m["text"] for m in detail["transcript"] if m["from"] == "note"]
    assert notes == ["[first] caller prefers English"]
    await chat.close()
    resumed = ChatClient(base)
    await resumed.connect(resume=chat.resume)
    history = await frame(resumed, "history")
    assert "caller prefers English" not in str(history)
    for c in (one, two):
        await c.close()
    await resumed.close()


async def test_org_unit_scope(base: str, admin: StaffClient) -> None:
    await admin.post(
        "/api/org-units", {"id": "city-a", "name": "A市", "parent_id": "default"}, expect=201
    )
    outsider = await make_agent(admin, base, "cityagent", unit="city-a")
    insider = await make_agent(admin, base, "provagent")
    await insider.post("/api/agents/me/status", {"status": "ready"})
    chat = await citizen(base)
    await insider.wait("offer")
    path = f"/api/conversations/{chat.conversation_id}"
    status, body = await outsider.call("GET", path, expect=None)
    assert (status, body["error"]) == (404, "not_found")
    status, _ = await outsider.call("POST", path + "/accept", {}, expect=None)
    assert status == 404
    listing = await outsider.get("/api/conversations?state=queued")
    assert listing["conversations"] == []
    assert chat.conversation_id in [
        c["id"] for c in (await insider.get("/api/conversations?state=queued"))["conversations"]
    ]
    # Replying before accepting is refused.
    status, body = await insider.call("POST", path + "/messages", {"text": "hi"}, expect=None)
    assert (status, body["error"]) == (409, "not_yours")
    for c in (outsider, insider):
        await c.close()
    await chat.close()


async def test_blacklisted_contact_is_refused(base: str, admin: StaffClient) -> None:
    first = await citizen(base)
    await admin.post(
        "/api/blacklist",
        {"conversation_id": first.conversation_id, "reason": "abusive"},
        expect=201,
    )
    await first.close()
    again = ChatClient(base)
    await again.connect(resume=first.resume)
    await admin.post(
        f"/api/conversations/{first.conversation_id}/close", {"disposition": "abusive"}
    )
    await again.say("1")  # the rating; then a new handoff attempt
    await again.send("再找人工")
    await frame(again, "state", state="queued")
    await frame(again, "state", state="closed")
    refused = await frame(again, "message", **{"from": "system"})
    assert "110" in refused["text"]
    await again.close()


async def test_max_wait_leaves_a_message_that_becomes_a_ticket(
    base: str, admin: StaffClient, acd_settings: Settings
) -> None:
    await admin.call("PATCH", "/api/queues/general", {"max_wait": 1})
    chat = await citizen(base)
    await frame(chat, "state", state="leave_message", timeout=10)
    replies = await chat.say("请回电：我要举报某局长受贿")
    assert "案件编号" in replies[-1]["text"]
    engine = make_engine(acd_settings.database_url)
    async with sessionmaker(engine)() as session:
        ticket = (
            await session.execute(
                select(Ticket).where(Ticket.conversation_id == chat.conversation_id)
            )
        ).scalar_one()
    await engine.dispose()
    assert ticket.kind == "message"
    assert ticket.fields["details"] == "请回电：我要举报某局长受贿"
    await chat.close()


async def test_supervisor_sees_queues_and_forces_break(base: str, admin: StaffClient) -> None:
    agent = await make_agent(admin, base, "worker")
    boss = await make_agent(admin, base, "boss", role="supervisor")
    await agent.post("/api/agents/me/status", {"status": "ready"})
    overview = await boss.get("/api/supervisor/overview")
    general = next(q for q in overview["queues"] if q["id"] == "general")
    assert general["agents_ready"] >= 1
    worker = next(a for a in overview["agents"] if a["username"] == "worker")
    assert worker["state"] == "ready"
    await boss.post(f"/api/supervisor/agents/{worker['id']}/status", {"status": "break"})
    status = await agent.wait("status", lambda f: f["state"] != "ready")
    assert (status["state"], status["reason"]) == ("break", "supervisor")
    status, _ = await agent.call("GET", "/api/supervisor/overview", expect=None)
    assert status == 403
    for c in (agent, boss):
        await c.close()


async def test_routing_by_language_and_vip_priority(base: str, admin: StaffClient) -> None:
    await admin.post(
        "/api/queues", {"id": "english", "name": "English", "language": "en"}, expect=201
    )
    en_agent = await make_agent(admin, base, "eng")
    await admin.call(
        "PUT", "/api/queues/english/members", [{"user_id": en_agent.user["id"], "penalty": 0}]
    )
    await en_agent.post("/api/agents/me/status", {"status": "ready"})
    chat = ChatClient(base, lang="en")
    await chat.connect()
    await chat.say("I would like to talk to a person please")
    offer = await en_agent.wait("offer")
    assert (offer["queue_id"], offer["language"]) == ("english", "en")
    await en_agent.post(f"/api/conversations/{chat.conversation_id}/reject")
    await chat.close()

    # With nobody ready, a VIP who arrives later is served first.
    await en_agent.post("/api/agents/me/status", {"status": "break", "reason": "meal"})
    plain = await citizen(base, "普通来电")
    vip = await citizen(base, "要紧事")
    await admin.post(f"/api/conversations/{vip.conversation_id}/vip", {"vip": True})
    await admin.post(
        f"/api/conversations/{vip.conversation_id}/close", {"disposition": "no_response"}
    )
    await vip.say("好")  # not a rating: a new handoff, now as a VIP
    assert [f["state"] for f in vip.frames if f["type"] == "state"][-1] == "queued"
    place = await frame(vip, "queue")
    assert place["position"] == 1
    queued = (await admin.get(f"/api/conversations/{vip.conversation_id}"))["queue"]
    assert (queued["position"], queued["priority"]) == (1, 2)
    behind = (await admin.get(f"/api/conversations/{plain.conversation_id}"))["queue"]
    assert (behind["position"], behind["priority"]) == (2, 0)
    assert behind["eta_seconds"] >= queued["eta_seconds"] > 0
    for c in (plain, vip):
        await c.close()
    await en_agent.close()


async def test_ticket_from_the_conversation_and_history_search(
    base: str, admin: StaffClient
) -> None:
    agent = await make_agent(admin, base, "ticketeer")
    await agent.post("/api/agents/me/status", {"status": "ready"})
    chat = await citizen(base, "我想反映村干部侵占补偿款")
    await agent.wait("offer")
    path = f"/api/conversations/{chat.conversation_id}"
    await agent.post(path + "/accept")
    bad = await agent.call("POST", path + "/ticket", {"kind": "gossip", "fields": {}}, expect=None)
    assert bad[0] == 400
    made = await agent.post(
        path + "/ticket",
        {"kind": "report", "fields": {"summary": "村干部侵占征地补偿款"}},
        expect=201,
    )
    ticket = made["ticket"]
    assert len(ticket["case_code"]) == 12 and len(ticket["pin"]) == 6
    again = await agent.call(
        "POST", path + "/ticket", {"kind": "report", "fields": {"summary": "x"}}, expect=None
    )
    assert again[0] == 409
    edited = (await agent.call("PATCH", path + "/ticket", {"status": "under_review"}))[1]["ticket"]
    assert edited["status"] == "under_review"
    assert edited["fields"]["summary"] == "村干部侵占征地补偿款"
    detail = await agent.get(path)
    assert detail["ticket"]["case_code"] == ticket["case_code"]
    assert "pin" not in detail["ticket"]
    await agent.post(path + "/close", {"disposition": "ticket_created"})
    found = await agent.get("/api/conversations?state=closed&mine=1&q=补偿款")
    assert [c["id"] for c in found["conversations"]] == [chat.conversation_id]
    assert (await agent.get("/api/conversations?state=closed&mine=1&q=没说过"))[
        "conversations"
    ] == []
    await chat.close()
    await agent.close()


async def test_a_city_site_routes_to_the_city_queue(base: str, admin: StaffClient) -> None:
    await admin.post(
        "/api/org-units", {"id": "city-b", "name": "B市", "parent_id": "default"}, expect=201
    )
    await admin.post(
        "/api/queues", {"id": "city-b-desk", "name": "B市", "org_unit_id": "city-b"}, expect=201
    )
    city = await make_agent(admin, base, "cityb", unit="city-b")
    province = await make_agent(admin, base, "provb")
    await admin.call(
        "PUT", "/api/queues/city-b-desk/members", [{"user_id": city.user["id"], "penalty": 0}]
    )
    for agent in (city, province):
        await agent.post("/api/agents/me/status", {"status": "ready"})
    local = await citizen(base, "我是B市的", unit="city-b")
    offer = await city.wait("offer")
    assert (offer["conversation_id"], offer["queue_id"]) == (local.conversation_id, "city-b-desk")
    # The province sees the city's conversations; the city agent gets no provincial offers.
    seen = await province.get(f"/api/conversations/{local.conversation_id}")
    assert seen["conversation"]["org_unit_id"] == "city-b"
    provincial = await citizen(base, "省里的事")
    offer = await province.wait("offer")
    assert offer["conversation_id"] == provincial.conversation_id
    assert not [f for f in city.frames if f.get("conversation_id") == provincial.conversation_id]
    for c in (city, province):
        await c.close()
    for chat in (local, provincial):
        await chat.close()


async def test_agent_socket_origin_check_and_logout_closes_it(
    base: str, admin: StaffClient
) -> None:
    agent = await make_agent(admin, base, "sockets")
    url = base.replace("http", "ws", 1) + "/ws/agent"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await agent.http.ws_connect(url, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    anonymous = aiohttp.ClientSession()
    with pytest.raises(aiohttp.WSServerHandshakeError) as nobody:
        await anonymous.ws_connect(url, headers={"Origin": base})
    assert nobody.value.status == 401
    await anonymous.close()
    await agent.post("/api/logout")
    assert agent.ws is not None
    async with asyncio.timeout(5):
        while not agent.ws.closed:
            await asyncio.sleep(0.05)
    assert agent.ws.close_code == 4001
    await agent.close()
