"""The contract every channel passes, each through its real transport.

Persist first (a redelivery is stored once), a knowledge-base answer, a report filed
with case code and PIN, case status by code and PIN, buttons native or numbered, the
language following the citizen, a handoff with the agent's reply on the same channel,
Rasa down, and malformed or oversize input refused without losing anything.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import HUB
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import (
    AuthorKind,
    Conversation,
    Message,
    Recording,
    Ticket,
    TicketKind,
)
from tests.audio_pcap import speak, write_rtp_pcap
from tests.channels.contract.conftest import ADMIN_PASSWORD, HubFactory
from tests.channels.contract.drivers import DRIVERS, Citizen, Reply, VoiceCitizen, joined
from tests.conftest import free_port
from tests.hostile import unstorable_texts
from tests.staff import StaffClient
from tests.test_phones import KO_MODEL, agent_with_phone, closed_now, go_ready

pytestmark = [pytest.mark.rasa, pytest.mark.usefixtures("rasa_stack")]

CASE = re.compile(r"(?:案件编号|Case code)[:：]\s*(\d{12})")
PIN = re.compile(r"(?:查询密码|PIN)[:：]\s*(\d{6})")
CJK = r"[\u4e00-\u9fff]"
Arrive = Any


async def transcript(settings: Settings, conversation_id: str) -> list[Message]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            query = select(Message).where(Message.conversation_id == conversation_id)
            return list((await session.execute(query.order_by(Message.id))).scalars())
    finally:
        await engine.dispose()


async def conversation_row(settings: Settings, conversation_id: str) -> Conversation:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            row = await session.get(Conversation, conversation_id)
            assert row is not None
            return row
    finally:
        await engine.dispose()


def buttons_of(citizen: Citizen, reply: Reply) -> tuple[str, ...]:
    """Native buttons, numbered lines on a text-only channel, or "press N" read out on
    the phone; never missing."""
    if citizen.capabilities.buttons:
        assert reply.buttons, reply
        return reply.buttons
    assert not reply.buttons, reply
    if citizen.capabilities.media == "realtime":
        return reply.pressed()
    return reply.numbered()


async def test_a_redelivered_message_is_stored_and_answered_once(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings
) -> None:
    hub = await start_hub()
    citizen = await arrive(hub)
    lines = citizen.lines
    first = await citizen.say(lines.first, message_id=str(uuid.uuid4()))
    assert lines.first_shows in joined(first)
    await citizen.redeliver()
    later = await citizen.say(lines.second)
    assert lines.second_shows in joined(later)
    assert citizen.conversation_id is not None
    rows = await transcript(contract_settings, citizen.conversation_id)
    said = [m.text for m in rows if m.author == AuthorKind.CITIZEN.value]
    assert said == [lines.first_stored, lines.second_stored]
    assert all(m.handled for m in rows)
    # One turn per message: the replies to the first appear once, before the second.
    asked = [i for i, m in enumerate(rows) if m.author == AuthorKind.CITIZEN.value]
    between = rows[asked[0] + 1 : asked[1]]
    assert len(between) == len(first)  # a text-only channel adds numbered buttons to the text
    assert all(r.text.startswith(m.text) for m, r in zip(between, first, strict=True))


async def test_a_question_is_answered_from_the_knowledge_base(
    start_hub: HubFactory, arrive: Arrive
) -> None:
    citizen = await arrive(await start_hub())
    answer = joined(await citizen.say(citizen.lines.question))
    assert citizen.lines.answer_shows in answer


async def test_a_report_is_filed_with_a_case_code_and_pin(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings, channel: str
) -> None:
    if DRIVERS[channel].capabilities.media == "realtime":
        await a_spoken_report_is_filed(start_hub, arrive, contract_settings)
        return
    citizen = await arrive(await start_hub())
    if DRIVERS[channel].capabilities.letters:
        # A letter carries the whole matter at once: filed from the one letter.
        done = joined(
            await citizen.say(
                "派出所民警非法扣押我的车，我要控告。上个月十号，县城东派出所的两名民警"
                "没有任何手续就把我的货车扣了，至今不还。"
            )
        )
    else:
        first = joined(await citizen.say("派出所民警非法扣押我的车，我要控告"))
        assert "登记控告" in first
        for answer in (
            "上个月派出所的两名民警没有任何手续就把我的货车扣了，至今不还",
            "上个月十号",
            "县城东派出所",
            "匿名",
        ):
            await citizen.say(answer)
        done = joined(await citizen.say("确认"))
    code, pin = CASE.search(done), PIN.search(done)
    assert code and pin, done
    engine = make_engine(contract_settings.database_url)
    async with sessionmaker(engine)() as session:
        ticket = (
            await session.execute(select(Ticket).where(Ticket.case_code == code.group(1)))
        ).scalar_one()
    await engine.dispose()
    assert ticket.kind == "complaint" and ticket.channel == channel
    assert "货车" in ticket.fields["details"]
    rows = await transcript(contract_settings, citizen.conversation_id or "")
    assert not any(pin.group(1) in m.text for m in rows)  # the PIN is shown, never stored


async def a_spoken_report_is_filed(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings
) -> None:
    """A caller cannot dictate a form's details to a recognizer with a grammar: the bot
    hands them to a person, and when nobody can take the call (here: after hours) the
    caller leaves the report as a spoken message. It becomes a ticket of the call's
    conversation with the recording linked; the caller hears the case code and PIN,
    and only the PIN's hash is kept."""
    citizen = await arrive(await start_hub(office_hours=closed_now()), "en")
    assert isinstance(citizen, VoiceCitizen)
    record = await citizen.leave_message("I want to report a bribe at the county court")
    engine = make_engine(contract_settings.database_url)
    async with sessionmaker(engine)() as session:
        ticket = (
            await session.execute(
                select(Ticket).where(Ticket.conversation_id == record.conversation_id)
            )
        ).scalar_one()
        recording = (
            await session.execute(select(Recording).where(Recording.call_id == record.id))
        ).scalar_one()
    await engine.dispose()
    assert ticket.kind == "message" and ticket.channel == "voice" and ticket.language == "en"
    assert re.fullmatch(r"\d{12}", ticket.case_code) and ticket.pin_hash.startswith("$argon2")
    assert ticket.fields["details"]  # the transcript, or how long the message was
    assert recording.ticket_id == str(ticket.id) and recording.kind == "message"


async def test_case_status_by_code_and_pin(start_hub: HubFactory, arrive: Arrive) -> None:
    hub = await start_hub()
    case = await hub.app[HUB].tickets.create(
        kind=TicketKind.REPORT,
        fields={"details": "挪用防汛资金"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    citizen = await arrive(hub)
    if citizen.capabilities.letters:  # one letter with both
        status = joined(
            await citizen.say(f"{citizen.lines.ask_status} {case.case_code} {case.pin}")
        )
    else:
        await citizen.say(citizen.lines.ask_status)
        await citizen.say(case.case_code)
        status = joined(await citizen.say(case.pin))
    assert case.case_code in status and citizen.lines.status_shows in status


async def test_buttons_are_native_or_numbered_and_a_choice_is_understood(
    start_hub: HubFactory, arrive: Arrive
) -> None:
    citizen = await arrive(await start_hub())
    lines = citizen.lines
    greeting = [r for r in await citizen.say(lines.hello) if lines.greeting_shows in r.text]
    assert greeting
    if citizen.capabilities.letters:
        # A letter's answer offers no choices (nobody answers a menu by mail): it says
        # what to write instead, and what is written is understood.
        assert not greeting[-1].buttons and not greeting[-1].numbered(), greeting[-1]
        assert lines.asks_code in greeting[-1].text
        asked = joined(await citizen.say(lines.check_button))
        assert lines.asks_code in asked
        return
    titles = buttons_of(citizen, greeting[-1])
    assert lines.check_button in titles and lines.report_button in titles
    asked = joined(await citizen.choose(greeting[-1], lines.check_button))
    assert lines.asks_code in asked


async def test_the_language_follows_the_citizen(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings, channel: str
) -> None:
    realtime = DRIVERS[channel].capabilities.media == "realtime"
    # A caller picks the language by key, once per call. The IVR gives a Mandarin caller
    # the bot only with a Mandarin recognizer, and none can be installed here: the Korean
    # Vosk model stands in for it, unused, as this caller only presses keys.
    hub = await start_hub(**({"vosk_models": (("zh", KO_MODEL),)} if realtime else {}))
    citizen = await arrive(hub, "en")
    english = joined(await citizen.say(citizen.lines.english_check))
    assert "case code" in english.lower() and not re.search(CJK, english)
    if realtime:
        # The menu's report key opens the bot's form in Mandarin.
        row = await conversation_row(contract_settings, citizen.conversation_id or "")
        assert row.language == "en"
        citizen = await arrive(hub, "zh")
        chinese = joined(await citizen.say("1"))
        assert "举报" in chinese and not re.search("[A-Za-z]{4,}", chinese), chinese
        row = await conversation_row(contract_settings, citizen.conversation_id or "")
        assert row.language == "zh"
        return
    if not citizen.capabilities.letters:  # a letter starts no form to cancel
        await citizen.say("cancel")
    chinese = joined(await citizen.say("我想查一下我的案件进度"))
    assert "案件编号" in chinese


async def test_handoff_and_the_agents_reply_arrives_on_the_same_channel(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings, channel: str
) -> None:
    hub = await start_hub()
    base = str(hub.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    if DRIVERS[channel].capabilities.media == "realtime":
        await a_caller_is_answered_by_an_agents_phone(hub, admin, arrive, contract_settings)
        await admin.close()
        return
    await admin.post(
        "/api/users",
        {"username": "agent1", "password": "agent-password-123", "role": "agent"},
        expect=201,
    )
    agent = await StaffClient(base).login("agent1", "agent-password-123")
    await agent.connect()
    await agent.post("/api/agents/me/status", {"status": "ready"})
    citizen = await arrive(hub)
    assert "人工" in joined(await citizen.say("转人工"))
    offer = await agent.wait("offer")
    assert offer["conversation_id"] == citizen.conversation_id
    await agent.post(f"/api/conversations/{citizen.conversation_id}/accept")
    await agent.post(
        f"/api/conversations/{citizen.conversation_id}/messages",
        {"text": "您好，我是工作人员，请讲"},
        expect=201,
    )
    heard = await citizen.expect(lambda r: "我是工作人员" in r.text)
    assert heard.text == "您好，我是工作人员，请讲"
    row = await conversation_row(contract_settings, citizen.conversation_id or "")
    assert row.state == "assigned" and row.handoff_reason == "requested"
    for client in (agent, admin):
        await client.close()


async def a_caller_is_answered_by_an_agents_phone(
    hub: TestServer, admin: StaffClient, arrive: Arrive, contract_settings: Settings
) -> None:
    """On the phone the agent's reply is their voice: the caller asks the bot for a
    person, the ACD offers the call to a ready agent, whose phone rings and answers, and
    the caller hears the agent in the same call."""
    agent, phone = await agent_with_phone(hub, admin, "agent1")
    voice = Path(tempfile.mkdtemp(prefix="agent-voice-")) / "agent.pcap"
    write_rtp_pcap(speak("Hello, this is the hotline.", voice.with_suffix(".wav")), voice)
    phone.answer(voice, ring_ms=500, talk_ms=4000)
    await go_ready(agent)
    citizen = await arrive(hub, "en")
    assert isinstance(citizen, VoiceCitizen)
    assert citizen.lines.to_person_shows in joined(await citizen.say(citizen.lines.to_person))
    offer = await agent.wait("offer", timeout=60)
    assert offer["conversation_id"] == citizen.conversation_id and offer["channel"] == "voice"
    record = await citizen.hears_agent()
    assert record.agent_id == agent.user["id"]
    row = await conversation_row(contract_settings, citizen.conversation_id or "")
    assert row.state == "assigned" and row.handoff_reason == "requested"
    await phone.done()
    await agent.close()


async def test_rasa_down_hands_the_citizen_to_a_person(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings
) -> None:
    hub = await start_hub(rasa_url=f"http://127.0.0.1:{free_port()}", rasa_timeout=1.0)
    citizen = await arrive(hub)
    reply = joined(await citizen.say(citizen.lines.report))
    assert citizen.lines.bot_unavailable_shows in reply
    row = await conversation_row(contract_settings, citizen.conversation_id or "")
    assert row.state == "queued" and row.handoff_reason == "bot_unavailable"
    said = [m.text for m in await transcript(contract_settings, row.id) if m.author == "citizen"]
    assert said == [citizen.lines.report_stored]


async def test_malformed_or_oversize_input_is_refused_and_nothing_is_lost(
    start_hub: HubFactory, arrive: Arrive, contract_settings: Settings
) -> None:
    citizen = await arrive(await start_hub())
    lines = citizen.lines
    await citizen.say(lines.hello)
    errors = await citizen.malformed()
    assert errors and all(errors), errors
    for text in unstorable_texts():
        assert await citizen.unstorable(text)
    after = joined(await citizen.say(lines.check_case))
    assert lines.asks_code in after  # the channel still serves this citizen
    rows = await transcript(contract_settings, citizen.conversation_id or "")
    said = [m.text for m in rows if m.author == AuthorKind.CITIZEN.value]
    assert said == [lines.hello, lines.check_case]
