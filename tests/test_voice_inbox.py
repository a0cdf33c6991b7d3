"""The ``Inbox`` methods the phone line uses, over a real hub and ACD (no Asterisk).

The IVR runs part of the dialogue itself (menus, voicemail, survey), yet the hub does
all the writing: these are the calls it makes, each checked against what the hub
stores and what it would answer a chat.
"""

from __future__ import annotations

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline import replies
from hotline.appkeys import ACD, HUB, SESSIONS
from hotline.inbox import HubInbox
from hotline.store.models import Blacklist, Contact, Conversation, Ticket, TicketKind
from hotline.tickets import LookupOutcome

CALLER = "13600000001"


def inbox_of(server: TestServer) -> HubInbox:
    inbox = HubInbox()
    inbox.bind(server.app[HUB])
    return inbox


async def conversation(server: TestServer, conversation_id: str) -> Conversation:
    async with server.app[SESSIONS]() as session:
        row = await session.get(Conversation, conversation_id)
    assert row is not None
    return row


async def test_a_caller_is_opened_handed_off_and_ended_through_the_inbox(
    hub_server: TestServer,
) -> None:
    inbox = inbox_of(hub_server)
    assert not await inbox.blocked("voice", CALLER)
    opened = await inbox.open("voice", "en", address=CALLER, intent="report_crime")
    cid = opened.conversation_id
    handling = await inbox.state(cid)
    assert handling is not None and handling.state == "bot" and handling.queue_id is None

    await inbox.hand_off(cid, "requested")
    handling = await inbox.state(cid)
    assert handling is not None
    assert (handling.state, handling.reason, handling.queue_id) == (
        "queued",
        "requested",
        "general",
    )
    assert hub_server.app[ACD].contact_view(cid) is not None
    await inbox.hand_off(cid, "bot_gave_up")  # queued already: its reason stays
    assert (await conversation(hub_server, cid)).handoff_reason == "requested"

    assert await inbox.end(cid, "abandoned", by="caller")
    row = await conversation(hub_server, cid)
    assert (row.state, row.disposition) == ("closed", "abandoned") and row.closed_at is not None
    assert hub_server.app[ACD].contact_view(cid) is None
    assert not await inbox.end(cid, "failed", by="system")  # closed already: untouched
    assert (await conversation(hub_server, cid)).disposition == "abandoned"

    await inbox.rate(cid, 3)
    row = await conversation(hub_server, cid)
    assert row.rating == 3 and not row.awaiting_rating
    await inbox.hand_off(cid, "requested")  # closed: not queued again
    assert (await conversation(hub_server, cid)).state == "closed"

    async with hub_server.app[SESSIONS]() as session:
        contact = (
            await session.execute(
                select(Contact).where(Contact.channel == "voice", Contact.external_id == CALLER)
            )
        ).scalar_one()
        assert contact.id == row.contact_id
        session.add(Blacklist(contact_id=contact.id, reason="abuse", created_by="test"))
        await session.commit()
    assert await inbox.blocked("voice", CALLER)
    assert not await inbox.blocked("sms", CALLER)


async def test_case_status_is_the_reply_every_channel_gives(hub_server: TestServer) -> None:
    inbox = inbox_of(hub_server)
    hub = hub_server.app[HUB]
    case = await hub.tickets.create(
        kind=TicketKind.REPORT,
        fields={"details": "x"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    found = await inbox.lookup_case(case.case_code, case.pin, key="call-1", lang="en")
    expected = replies.case_status(await hub.tickets.lookup(case.case_code, case.pin, "c"), "en")
    assert found.outcome == LookupOutcome.FOUND.value and found.text == expected.text
    assert case.case_code in found.text
    wrong = "000000" if case.pin != "000000" else "111111"
    missed = await inbox.lookup_case(case.case_code, wrong, key="call-1", lang="zh")
    assert missed.outcome == "no_match" and missed.buttons


async def test_a_spoken_message_is_filed_by_the_hub(hub_server: TestServer) -> None:
    inbox = inbox_of(hub_server)
    opened = await inbox.open("voice", "zh", address=CALLER)
    filed = await inbox.leave_message(opened.conversation_id, "请回电")
    async with hub_server.app[SESSIONS]() as session:
        ticket = (
            await session.execute(select(Ticket).where(Ticket.id == filed.ticket_id))
        ).scalar_one()
    assert ticket.kind == "message" and ticket.case_code == filed.case_code
    assert ticket.conversation_id == opened.conversation_id and ticket.channel == "voice"
    assert ticket.fields["details"] == "请回电" and len(filed.pin) == 6
