"""One citizen across channels (``hotline.contacts``), on SQLite and PostgreSQL.

* The same number on voice and SMS is one person: the SMS conversation's screen pop
  lists the call, and the ACD's history (``earlier_conversations``) spans both.
* A web chat citizen proves a phone: ``/link <number>`` sends a code by real SMS through
  Kannel's fake handset network, and typing it back links the two; wrong, expired and
  exhausted codes, the rate limit, bad addresses and a kind no channel reaches are
  refused in the citizen's language.
* A supervisor links two contacts through the API and an agent of the citizen's
  conversation undoes it; each is audited; staff of another unit get a 404; an undone
  phone link is not redone by the number.

Rasa is down in these hubs (its URL is a closed port): the link command is answered by
the hub before the bot is asked, and a citizen's other messages go to a person.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from hotline.appkeys import HUB, SESSIONS
from hotline.config import Settings
from hotline.contacts import Address, AlreadyLinked, parse_address, phone_key
from hotline.conversations import earlier_conversations
from hotline.inbox import HubInbox
from hotline.messages import Outbound
from hotline.ports import Channel
from hotline.store.models import (
    AuditLog,
    Contact,
    ContactLink,
    ContactProof,
    Conversation,
    Message,
)
from hotline.web import create_app
from tests.channels.kannel import Kannel, Phone, joined, new_number
from tests.chat import ChatClient, texts
from tests.conftest import free_port
from tests.staff import StaffClient
from tests.test_handoff import ADMIN_PASSWORD, make_agent
from voice_ivr.line import VoiceChannel


class VoiceStandIn(Channel):
    """The voice line's output side as the hub sees it, for a hub without Asterisk: the
    real ``VoiceChannel`` capabilities (its address is a phone number), no calls."""

    name: ClassVar[str] = "voice"
    capabilities = VoiceChannel.capabilities

    async def deliver(self, message: Outbound) -> None:
        pass


def down(settings: Settings, **sections: dict[str, str]) -> Settings:
    return replace(
        settings,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
        admin_password=ADMIN_PASSWORD,
        acd_tick_seconds=0.2,
        channels=tuple(sections) or settings.channels,
        channel_sections=sections or settings.channel_sections,
    )


async def serve(settings: Settings) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    server.app[HUB].channels.register(VoiceStandIn())
    return server


@pytest.fixture
async def sms_hub(settings: Settings, kannel: Kannel) -> AsyncIterator[TestServer]:
    server = await serve(down(settings, webchat={}, sms=kannel.section()))
    yield server
    await server.close()


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[TestServer]:
    server = await serve(down(settings))
    yield server
    await server.close()


def base_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def inbox_of(server: TestServer) -> HubInbox:
    inbox = HubInbox()
    inbox.bind(server.app[HUB])
    return inbox


async def rows(server: TestServer, query: Any) -> list[Any]:
    async with server.app[SESSIONS]() as session:
        return list((await session.execute(query)).scalars())


async def contact_of(server: TestServer, conversation_id: str) -> Contact:
    async with server.app[SESSIONS]() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        contact = await session.get(Contact, conversation.contact_id)
        assert contact is not None
        return contact


async def audit(server: TestServer, action: str) -> list[AuditLog]:
    return await rows(
        server, select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
    )


async def sms_conversation(server: TestServer, number: str) -> str:
    found = await rows(
        server,
        select(Conversation.id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Contact.channel == "sms", Contact.external_id == number)
        .order_by(Conversation.created_at.desc()),
    )
    assert found, number
    return str(found[0])


# ------------------------------------------------------------------ pure parts
def test_numbers_and_addresses() -> None:
    # What the voice line stores (the caller id as Asterisk gives it) and what the SMS
    # channel stores (mainland mobiles without +86) are one key.
    assert phone_key("+8613800000001") == phone_key("13800000001") == "13800000001"
    assert phone_key("0086 138-0000-0001") == "13800000001"
    assert phone_key("+44 20 7946 0018") == phone_key("442079460018") == "442079460018"
    assert phone_key("anonymous") is None and phone_key("") is None
    assert parse_address("Li.Na@Example.TEST") == Address("email", "li.na@example.test")
    assert parse_address("+86 138 0000 0001") == Address("phone", "13800000001")
    for junk in ("123456", "hello", "a@b", "@example.com", "12345", "<b>@x.cn"):
        assert parse_address(junk) is None, junk
    assert Address("phone", "13800000001").masked() == "138****0001"
    assert Address("email", "li.na@example.test").masked() == "l***@example.test"


# ------------------------------------------------------------ voice and SMS
async def test_the_same_number_on_voice_and_sms_is_one_citizen(
    sms_hub: TestServer,
    kannel: Kannel,
) -> None:
    number = new_number()
    # The call: the voice line opens its conversation with the caller id as Asterisk
    # gives it (with +86); the SMS channel keys the same phone without it.
    call = await inbox_of(sms_hub).open("voice", "zh", address="+86" + number)
    voice = await contact_of(sms_hub, call.conversation_id)
    assert (voice.phone_key, voice.person_id) == (number, None)

    async with Phone(sms_hub, kannel, number) as phone:
        assert "智能助手暂时无法回复" in joined(await phone.say("我想问一下进展"))
    text_id = await sms_conversation(sms_hub, number)
    sms = await contact_of(sms_hub, text_id)
    voice = await contact_of(sms_hub, call.conversation_id)
    assert sms.id != voice.id and sms.person_id is not None
    assert sms.person_id == voice.person_id and sms.phone_key == number

    admin = await StaffClient(base_of(sms_hub)).login("admin", ADMIN_PASSWORD)
    pop = (await admin.get(f"/api/conversations/{text_id}"))["contact"]
    assert [(p["id"], p["channel"]) for p in pop["previous"]] == [(call.conversation_id, "voice")]
    assert [
        (link["contact_id"], link["channel"], link["how"], link["by"]) for link in pop["links"]
    ] == [(voice.id, "voice", "phone", "system")]
    assert number not in str(pop["links"])  # channels, never the number
    # And the other way round: the call's screen pop has the SMS thread.
    pop = (await admin.get(f"/api/conversations/{call.conversation_id}"))["contact"]
    assert [(p["id"], p["channel"]) for p in pop["previous"]] == [(text_id, "sms")]
    assert [link["channel"] for link in pop["links"]] == ["sms"]
    # The ACD's caller history (priority, sticky agent) reads the same span.
    async with sms_hub.app[SESSIONS]() as session:
        conversation = await session.get(Conversation, call.conversation_id)
        assert conversation is not None
        assert [c.id for c in await earlier_conversations(session, conversation, 5)] == [text_id]
    linked = await audit(sms_hub, "contact.link")
    assert [(a.actor, a.record_id, (a.detail or {})["how"]) for a in linked] == [
        ("system", sms.id, "phone")
    ]

    # A withheld caller id joins nobody.
    hidden = await inbox_of(sms_hub).open("voice", "zh", address="anonymous")
    assert (await contact_of(sms_hub, hidden.conversation_id)).person_id is None

    # Undone by a supervisor, the phone link stays undone: the number does not redo it.
    await admin.post(
        "/api/users",
        {"username": "boss", "password": "agent-password-123", "role": "supervisor"},
        expect=201,
    )
    boss = await StaffClient(base_of(sms_hub)).login("boss", "agent-password-123")
    status, body = await boss.call("DELETE", f"/api/contacts/{sms.id}/link")
    assert status == 200 and body["links"] == []
    again = await inbox_of(sms_hub).open("voice", "zh", address="+86" + number)
    assert (await contact_of(sms_hub, again.conversation_id)).id == voice.id
    assert (await contact_of(sms_hub, text_id)).person_id is None
    assert (await contact_of(sms_hub, again.conversation_id)).person_id is None
    pop = (await boss.get(f"/api/conversations/{text_id}"))["contact"]
    assert pop["previous"] == [] and pop["links"] == []
    undone = await audit(sms_hub, "contact.unlink")
    assert [(a.actor, a.record_id, (a.detail or {})["how"]) for a in undone] == [
        ("boss", sms.id, "phone")
    ]
    # A supervisor can still join them on purpose.
    linked_again = await boss.post(
        f"/api/contacts/{sms.id}/links", {"conversation_id": call.conversation_id}, expect=201
    )
    assert [(link["channel"], link["how"], link["by"]) for link in linked_again["links"]] == [
        ("voice", "supervisor", "boss")
    ]
    for client in (admin, boss):
        await client.close()


# -------------------------------------------------------------- proof by SMS
async def code_from(phone: Phone) -> str:
    event = await phone.receive(30)
    found = re.search(r"(?<!\d)(\d{6})(?!\d)", event["text"])
    assert found, event
    return found.group(1)


async def test_a_web_chat_citizen_proves_a_phone_by_sms(
    sms_hub: TestServer,
    kannel: Kannel,
) -> None:
    number = new_number()
    chat = ChatClient(base_of(sms_hub))
    await chat.connect()
    async with Phone(sms_hub, kannel, number) as phone:
        said = texts(await chat.say(f"/link {number}"))
        masked = number[:3] + "****" + number[-4:]
        assert f"已向 {masked} 发送了6位验证码" in said and number not in said
        code = await code_from(phone)
        assert "验证码" in phone.received[-1]["text"]
        said = texts(await chat.say(f"绑定 {code}"))
        assert f"关联成功：本会话已与 {masked} 关联" in said
        # Asking again for the same phone: already linked, and no code goes out.
        assert f"本会话已与 {masked} 关联" in texts(await chat.say(f"/link {number}"))
        assert await phone.sent_count() == 1

        web = await contact_of(sms_hub, chat.conversation_id or "")
        sms = (
            await rows(
                sms_hub,
                select(Contact).where(Contact.channel == "sms", Contact.external_id == number),
            )
        )[0]
        assert web.person_id is not None and web.person_id == sms.person_id
        assert sms.phone_key == number
        proof = (await rows(sms_hub, select(ContactProof)))[0]
        assert (proof.state, proof.address, proof.code_hash, proof.tries) == (
            "linked",
            None,
            None,
            0,
        )
        lines = await rows(
            sms_hub,
            select(Message.text)
            .where(Message.conversation_id == chat.conversation_id)
            .order_by(Message.id),
        )
        assert f"/link {masked}" in lines and "/link ******" in lines
        assert not any(code in line or number in line for line in lines), lines
        linked = await audit(sms_hub, "contact.link")
        assert [(a.actor, a.record_id, a.detail) for a in linked] == [
            (
                "citizen",
                sms.id,
                {
                    "other": web.id,
                    "how": "proof",
                    "person": web.person_id,
                    "conversation_id": chat.conversation_id,
                },
            )
        ]

        # The citizen now texts from that phone: both screen pops show both threads.
        await phone.say("我是刚才网上咨询的")
        text_id = await sms_conversation(sms_hub, number)
        admin = await StaffClient(base_of(sms_hub)).login("admin", ADMIN_PASSWORD)
        pop = (await admin.get(f"/api/conversations/{text_id}"))["contact"]
        assert [(p["id"], p["channel"]) for p in pop["previous"]] == [
            (chat.conversation_id, "webchat")
        ]
        assert [(link["channel"], link["how"], link["by"]) for link in pop["links"]] == [
            ("webchat", "proof", "citizen")
        ]
        pop = (await admin.get(f"/api/conversations/{chat.conversation_id}"))["contact"]
        assert [p["id"] for p in pop["previous"]] == [text_id]
        await admin.close()
    await chat.close()


async def test_wrong_expired_and_exhausted_codes_and_the_limits(
    sms_hub: TestServer,
    kannel: Kannel,
) -> None:
    number = new_number()
    chat = ChatClient(base_of(sms_hub), lang="en")
    await chat.connect()
    cid = chat.conversation_id or ""
    assert "type /link followed by your email" in texts(await chat.say("/link hello"))
    assert "No code is waiting" in texts(await chat.say("link 123456"))
    # No channel sends email here (the email channel is not loaded): said, no code.
    said = texts(await chat.say("/link li.na@example.test"))
    assert "cannot send a code to an email address" in said and "li.na" not in said
    async with Phone(sms_hub, kannel, number) as phone:
        # 1. Five wrong codes kill the code, even the right one after them.
        assert "sent a 6-digit code" in texts(await chat.say(f"/link {number}"))
        code = await code_from(phone)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for left in (4, 3, 2, 1):
            assert f"You have {left} more tries" in texts(await chat.say(f"/link {wrong}"))
        assert "Too many wrong codes" in texts(await chat.say(f"/link {wrong}"))
        assert "Too many wrong codes" in texts(await chat.say(f"/link {code}"))
        # 2. A code past its 15 minutes is expired.
        assert "sent a 6-digit code" in texts(await chat.say(f"/link {number}"))
        code = await code_from(phone)
        async with sms_hub.app[SESSIONS]() as session:
            await session.execute(
                update(ContactProof)
                .where(ContactProof.conversation_id == cid, ContactProof.state == "open")
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
            await session.commit()
        assert "That code has expired" in texts(await chat.say(f"/link {code}"))
        # 3. A new code replaces the one before it; the old one no longer links.
        assert "sent a 6-digit code" in texts(await chat.say(f"/link {number}"))
        newest = await code_from(phone)
        # 4. Three codes an hour per contact: the fourth is refused and nothing is sent.
        said = texts(await chat.say(f"/link {number}"))
        assert "asked for several codes recently" in said and "60 minutes" in said
        assert await phone.sent_count() == 3
        # The newest code still works, in Mandarin too.
        assert "关联成功" in texts(await chat.say(f"绑定 {newest}"))
    states = await rows(
        sms_hub,
        select(ContactProof.state)
        .where(ContactProof.conversation_id == cid)
        .order_by(ContactProof.created_at),
    )
    assert states == ["exhausted", "expired", "linked"]
    web = await contact_of(sms_hub, cid)
    assert web.person_id is not None
    await chat.close()


# ------------------------------------------------------- supervisor and agent
async def test_a_supervisor_links_an_agent_undoes_and_other_units_see_nothing(
    hub: TestServer,
) -> None:
    base = base_of(hub)
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    await admin.post("/api/org-units", {"id": "north", "name": "North"}, expect=201)
    boss = await make_agent(admin, base, "boss", role="supervisor")
    agent = await make_agent(admin, base, "wang")
    idle = await make_agent(admin, base, "zhao")
    stranger = await make_agent(admin, base, "north.agent", unit="north")
    north_boss = await make_agent(admin, base, "north.boss", unit="north", role="supervisor")

    # The same citizen in two browsers: two web chat contacts, nothing joins them.
    first, second = ChatClient(base), ChatClient(base)
    await first.connect()
    await second.connect()
    one = await contact_of(hub, first.conversation_id or "")
    two = await contact_of(hub, second.conversation_id or "")
    assert one.person_id is None and two.person_id is None

    # Agents may not link; a supervisor of another unit does not see the contact.
    status, body = await agent.call(
        "POST",
        f"/api/contacts/{one.id}/links",
        {"conversation_id": second.conversation_id},
        expect=None,
    )
    assert status == 403
    status, body = await north_boss.call(
        "POST",
        f"/api/contacts/{one.id}/links",
        {"conversation_id": second.conversation_id},
        expect=None,
    )
    assert (status, body["error"]) == (404, "not_found")
    status, body = await boss.call(
        "POST", f"/api/contacts/{one.id}/links", {"conversation_id": "no-such"}, expect=None
    )
    assert status == 400 and "conversation_id" in body["message"] and body["message_zh"]
    status, body = await boss.call(
        "POST",
        f"/api/contacts/{one.id}/links",
        {"conversation_id": first.conversation_id},
        expect=None,
    )
    assert (status, body["error"]) == (409, "already_linked") and body["message_zh"]

    linked = await boss.post(
        f"/api/contacts/{one.id}/links", {"conversation_id": second.conversation_id}, expect=201
    )
    assert [
        (link["contact_id"], link["channel"], link["how"], link["by"]) for link in linked["links"]
    ] == [(two.id, "webchat", "supervisor", "boss")]
    status, body = await boss.call(
        "POST",
        f"/api/contacts/{two.id}/links",
        {"conversation_id": first.conversation_id},
        expect=None,
    )
    assert (status, body["error"]) == (409, "already_linked")
    entries = await audit(hub, "contact.link")
    assert [
        (a.actor, a.record_id, (a.detail or {})["how"], (a.detail or {})["other"]) for a in entries
    ] == [("boss", two.id, "supervisor", one.id)]

    # The first conversation goes to the agent wang (Rasa is down: a person takes it).
    await agent.post("/api/agents/me/status", {"status": "ready"})
    await first.say("我要找人工")
    offer = await agent.wait("offer")
    assert offer["conversation_id"] == first.conversation_id
    await agent.post(f"/api/conversations/{first.conversation_id}/accept")
    pop = (await agent.get(f"/api/conversations/{first.conversation_id}"))["contact"]
    assert [(link["contact_id"], link["how"]) for link in pop["links"]] == [(two.id, "supervisor")]
    assert [p["id"] for p in pop["previous"]] == [second.conversation_id]

    # Another unit's agent: 404, not even a hint. An agent of the unit who does not hold
    # the citizen's conversation: 403.
    status, body = await stranger.call("DELETE", f"/api/contacts/{two.id}/link", expect=None)
    assert (status, body["error"]) == (404, "not_found")
    status, body = await idle.call("DELETE", f"/api/contacts/{two.id}/link", expect=None)
    assert (status, body["error"]) == (403, "not_yours") and body["message_zh"]
    status, body = await agent.call("DELETE", f"/api/contacts/{two.id}/link")
    assert body == {"contact_id": two.id, "links": []}
    status, body = await agent.call("DELETE", f"/api/contacts/{two.id}/link", expect=None)
    assert (status, body["error"]) == (409, "not_linked")
    pop = (await agent.get(f"/api/conversations/{first.conversation_id}"))["contact"]
    assert pop["links"] == [] and pop["previous"] == []
    assert (await contact_of(hub, first.conversation_id or "")).person_id is None
    entries = await audit(hub, "contact.unlink")
    assert [(a.actor, a.record_id, (a.detail or {})["how"]) for a in entries] == [
        ("wang", two.id, "supervisor")
    ]
    ended = await rows(hub, select(ContactLink).order_by(ContactLink.contact_id))
    assert sorted((r.contact_id, r.ended, r.ended_by) for r in ended) == sorted(
        [(one.id, "alone", "wang"), (two.id, "undone", "wang")]
    )
    for client in (admin, boss, agent, idle, stranger, north_boss):
        await client.close()
    for chat in (first, second):
        await chat.close()


async def test_two_persons_linked_become_one_and_the_last_left_is_alone(hub: TestServer) -> None:
    links = hub.app[HUB].links
    async with hub.app[SESSIONS]() as session:
        a, b, c, d = (Contact(channel="webchat", external_id=new_number()) for _ in range(4))
        session.add_all([a, b, c, d])
        await session.commit()
        ids = [a.id, b.id, c.id, d.id]
    await links.link(ids[0], ids[1], how="supervisor", by="boss", conversation_id=None)
    await links.link(ids[2], ids[3], how="supervisor", by="boss", conversation_id=None)
    await links.link(ids[1], ids[2], how="proof", by="citizen", conversation_id=None)
    with pytest.raises(AlreadyLinked):
        await links.link(ids[3], ids[0], how="supervisor", by="boss", conversation_id=None)
    contacts = await rows(hub, select(Contact).where(Contact.id.in_(ids)))
    assert len({x.person_id for x in contacts}) == 1 and contacts[0].person_id is not None
    async with hub.app[SESSIONS]() as session:
        first = await session.get(Contact, ids[0])
        assert first is not None
        shown = await links.links_of(session, first)
    # c was linked again (by proof, to b); d came along as it had been linked.
    assert [(x["contact_id"], x["how"]) for x in shown] == [
        (ids[1], "supervisor"),
        (ids[2], "proof"),
        (ids[3], "supervisor"),
    ]
    assert await links.unlink(ids[2], by="boss") and not await links.unlink(ids[2], by="boss")
    for left in (ids[0], ids[1]):
        async with hub.app[SESSIONS]() as session:
            member = await session.get(Contact, left)
            assert member is not None
            assert len(await links.links_of(session, member)) == 2
    await links.unlink(ids[0], by="boss")
    await links.unlink(ids[1], by="boss")  # d is the last one left: a person of its own
    contacts = await rows(hub, select(Contact).where(Contact.id.in_(ids)))
    assert {x.person_id for x in contacts} == {None}
    ended = await rows(hub, select(ContactLink).order_by(ContactLink.id))
    assert [(r.contact_id, r.how, r.ended) for r in ended if r.contact_id in ids[2:]] == [
        (ids[2], "supervisor", "merged"),
        (ids[3], "supervisor", "alone"),
        (ids[2], "proof", "undone"),
    ]
    assert len(await audit(hub, "contact.link")) == 3
    assert len(await audit(hub, "contact.unlink")) == 3
