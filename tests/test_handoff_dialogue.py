"""Handoff from the real bot: what Rasa collected reaches the agent, and Rasa forgets it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AuditLog
from hotline.web import create_app
from tests.chat import ChatClient, texts
from tests.staff import StaffClient
from tests.test_handoff import ADMIN_PASSWORD, frame, make_agent

pytestmark = [pytest.mark.rasa, pytest.mark.usefixtures("rasa_stack")]


@pytest.fixture
async def base(settings: Settings) -> AsyncIterator[str]:
    live = replace(settings, admin_password=ADMIN_PASSWORD, acd_tick_seconds=0.2)
    srv = TestServer(create_app(live), host="127.0.0.1", port=live.http_port)
    await srv.start_server()
    yield str(srv.make_url("")).rstrip("/")
    await srv.close()


def tracker_events(settings: Settings, conversation_id: str) -> int:
    with sqlite3.connect(settings.rasa_tracker_url.split(":///", 1)[1]) as db:
        return int(
            db.execute(
                "SELECT count(*) FROM events WHERE sender_id = ?", (conversation_id,)
            ).fetchone()[0]
        )


async def test_mid_report_handoff_carries_fields_and_guards_identity(
    base: str, settings: Settings
) -> None:
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    agent = await make_agent(admin, base, "zhang")
    boss = await make_agent(admin, base, "chief", role="supervisor")
    await agent.post("/api/agents/me/status", {"status": "ready"})

    chat = ChatClient(base)
    await chat.connect()
    await chat.say("我要举报县财政局的局长受贿")
    await chat.say("王大明")
    await chat.say("县财政局")
    await chat.say("局长")
    await chat.say("他收受开发商贿赂二十万元")
    await chat.say("去年三月")
    await chat.say("县政府大院")
    await chat.say("有转账记录")
    await chat.say("实名", payload="/affirm")
    await chat.say("李四")
    handed = texts(await chat.say("我要转人工"))
    assert "人工" in handed
    assert {"type": "state", "state": "queued"} in chat.frames

    offer = await agent.wait("offer")
    assert offer["intent"] == "report_crime"
    await agent.post(f"/api/conversations/{chat.conversation_id}/accept")
    await frame(chat, "state", state="assigned")

    detail = await agent.get(f"/api/conversations/{chat.conversation_id}")
    fields = detail["fields"]
    assert fields["person"] == "王大明" and fields["unit"] == "县财政局"
    assert fields["case_kind"] == "report"
    assert "reporter_name" not in fields and "李四" not in str(detail)
    assert detail["identity"] == "hidden"
    assert detail["conversation"]["intent"] == "report_crime"
    assert detail["conversation"]["handoff_reason"] == "requested"
    status, _ = await agent.call(
        "POST", f"/api/conversations/{chat.conversation_id}/identity", {}, expect=None
    )
    assert status == 403

    supervised = await boss.get(f"/api/conversations/{chat.conversation_id}")
    assert supervised["identity"] == "revealable"
    revealed = await boss.post(f"/api/conversations/{chat.conversation_id}/identity")
    assert revealed["identity"]["name"] == "李四"
    engine = make_engine(settings.database_url)
    async with sessionmaker(engine)() as session:
        audits = list(
            (
                await session.execute(
                    select(AuditLog).where(
                        AuditLog.action == "identity.reveal", AuditLog.actor == "chief"
                    )
                )
            ).scalars()
        )
    await engine.dispose()
    assert len(audits) == 1

    # Rasa's copy of the half-filled form is gone; the hub's sealed copy is the record.
    assert tracker_events(settings, chat.conversation_id or "") == 0
    # From queued on, Rasa is not asked: a message goes to the agent, not the bot.
    await chat.send("局长姓王")
    pushed = await agent.wait("message", lambda f: f["message"]["text"] == "局长姓王")
    assert pushed["message"]["text"] == "局长姓王"
    assert tracker_events(settings, chat.conversation_id or "") == 0
    for client in (admin, agent, boss):
        await client.close()
    await chat.close()


async def test_repeated_misses_hand_off(base: str) -> None:
    """Three questions in a row the bot cannot answer put a person on the line.

    A consult with no usable words (the payload alone) is a guaranteed miss; free text
    would depend on what the classifier makes of it.
    """
    chat = ChatClient(base)
    await chat.connect()
    first = await chat.say("咨询", payload="/legal_consult")
    assert "没有找到确切的答案" in texts(first)
    await chat.say("咨询", payload="/legal_consult")
    assert {"type": "state", "state": "queued"} not in chat.frames
    third = await chat.say("咨询", payload="/legal_consult")
    assert "转接人工" in texts(third)
    assert {"type": "state", "state": "queued"} in chat.frames
    await chat.close()
