"""Callers who hang up before a person answers: wherever in the flow it happens, the
call's conversation ends and nothing of it stays with the ACD.

Each test is one real SIPp caller on the session's Asterisk who hangs up (a BYE) at one
point of the flow: the language menu, the main menu, the "connecting you" prompt right
after pressing 0 (the hang-up that left "ghost" queued conversations with no queue),
hold music with no agent who has a phone, an agent's phone ringing (a SIPp phone that
never answers), the voicemail prompt after the ACD gave up, halfway through a spoken
message, the bot talking, the bot's turn that hands off (the hub still at work), and the
bot saying it hands off. Then: the CDR's disposition (``caller_hangup`` before the caller
asked for a person, ``abandoned`` after, ``message`` once a message was left), every
conversation of the caller ``closed`` with that same disposition, none listed by
``GET /api/conversations?state=queued``, no ``acd_contact`` row and nothing in the ACD
engine. Each test also checks from the CDR (and the conversation's ``queued_at``) that the
hang-up came at the point it is about, so a timing that drifted shows as a failure rather
than a test of some other point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import ACD, VOICE
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import (
    AcdContact,
    CallRecord,
    Contact,
    Conversation,
    Recording,
    Ticket,
)
from tests.audio_pcap import read_pcm, write_rtp_pcap
from tests.staff import StaffClient
from tests.test_phones import (
    PASSWORD,
    admin,
    agent_with_phone,
    go_ready,
    hub,
    set_queue,
    voices,
)
from tests.voice import Step, call, record_of, steps

__all__ = ["admin", "hub", "voices"]  # fixtures, used by name

pytestmark = pytest.mark.voice

# Mandarin (barging into the welcome), then 0 (a person) barging into the main menu.
TO_A_PERSON: list[Step] = [(2500, "1"), (1500, "0")]


@dataclass(frozen=True)
class Gone:
    """What is left of a call that ended: its CDR, path and conversation (if any)."""

    record: CallRecord
    path: list[tuple[str, object]]
    conversation: Conversation | None


async def let_go(hub: TestServer, admin: StaffClient, db_url: str, caller: str) -> Gone:
    """The caller's finished call, checked for what every hang-up must leave behind: each
    of the caller's conversations closed with the CDR's disposition, and none of them
    queued, in ``acd_contact`` or in the ACD engine."""
    record = await record_of(db_url, caller)
    engine = make_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            conversations = list(
                (
                    await session.execute(
                        select(Conversation)
                        .join(Contact, Contact.id == Conversation.contact_id)
                        .where(Contact.channel == "voice", Contact.external_id == caller)
                    )
                ).scalars()
            )
            held = list((await session.execute(select(AcdContact.conversation_id))).scalars())
    finally:
        await engine.dispose()
    path = steps(record)
    assert [c.id for c in conversations] == [
        cid for cid in (record.conversation_id,) if cid is not None
    ], path
    for conversation in conversations:
        state = (conversation.state, conversation.disposition)
        assert state == ("closed", record.disposition), (state, path)
        assert conversation.closed_at is not None
        assert hub.app[ACD].contact_view(conversation.id) is None, path
    assert held == [], path
    queued = await admin.get("/api/conversations?state=queued&limit=200")
    assert queued["conversations"] == [], queued
    return Gone(record, path, conversations[0] if conversations else None)


async def test_hang_up_in_the_language_menu(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    await call(hub.app[VOICE].settings, "13500000001", [(1500, "")])
    gone = await let_go(hub, admin, db_url, "13500000001")
    assert gone.path == [("answered", None)]
    assert gone.record.disposition == "caller_hangup" and gone.conversation is None


async def test_hang_up_in_the_main_menu(hub: TestServer, admin: StaffClient, db_url: str) -> None:
    await call(hub.app[VOICE].settings, "13500000002", [(2500, "1"), (3000, "")])
    gone = await let_go(hub, admin, db_url, "13500000002")
    assert gone.path == [("answered", None), ("language", "zh")]
    assert gone.record.disposition == "caller_hangup" and gone.conversation is None


async def test_hang_up_while_told_they_are_being_connected(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    """The reported ghost: 1, 0, and gone during "正在为您转接人工服务" (about 5 s)."""
    await call(hub.app[VOICE].settings, "13500000003", [*TO_A_PERSON, (1500, "")])
    gone = await let_go(hub, admin, db_url, "13500000003")
    assert gone.path[-3:] == [("menu", "agent"), ("handoff", "requested"), ("abandoned", None)]
    assert gone.record.disposition == "abandoned"
    assert gone.conversation is not None and gone.conversation.queued_at is None  # not yet


async def test_hang_up_on_hold_with_no_agent_phone(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    """An agent is ready for chats but has no phone: the call waits in the queue."""
    await admin.post(
        "/api/users", {"username": "carol", "password": PASSWORD, "role": "agent"}, expect=201
    )
    carol = await StaffClient(str(hub.make_url("")).rstrip("/")).login("carol", PASSWORD)
    await carol.connect()
    await go_ready(carol)
    await call(hub.app[VOICE].settings, "13500000004", [*TO_A_PERSON, (9000, "")])
    gone = await let_go(hub, admin, db_url, "13500000004")
    assert gone.path[-2:] == [("handoff", "requested"), ("abandoned", None)]
    assert gone.record.disposition == "abandoned"
    assert gone.record.wait_seconds is not None and gone.record.wait_seconds >= 2
    assert gone.conversation is not None and gone.conversation.queue_id == "general"
    assert gone.conversation.queued_at is not None
    assert not [f for f in carol.frames if f.get("type") == "offer"]
    await carol.close()


async def test_hang_up_while_an_agent_phone_rings(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    alice, phone = await agent_with_phone(hub, admin, "alice")
    phone.ring_out()  # rings until the hotline cancels it
    await go_ready(alice)
    await call(hub.app[VOICE].settings, "13500000005", [*TO_A_PERSON, (10000, "")])
    await phone.done()  # the ringing phone was cancelled
    gone = await let_go(hub, admin, db_url, "13500000005")
    assert gone.path[-2:] == [("ringing_agent", None), ("abandoned", None)], gone.path
    assert gone.record.disposition == "abandoned" and gone.record.agent_id is None
    view = hub.app[ACD].agent_view(alice.user["id"])
    assert view.offer is None and view.contacts == (), view
    await alice.wait("offer_withdrawn", lambda f: f["reason"] == "abandoned")
    await alice.close()


async def test_hang_up_during_the_voicemail_prompt(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    """Nobody answers within the queue's max wait: the ACD gives up, the caller is asked
    to leave a message (about 14 s) and hangs up while hearing it."""
    await set_queue(db_url, hub, max_wait=1)
    await call(hub.app[VOICE].settings, "13500000006", [*TO_A_PERSON, (12000, "")])
    gone = await let_go(hub, admin, db_url, "13500000006")
    assert gone.path[-2:] == [("voicemail", "nobody_free"), ("abandoned", None)], gone.path
    assert gone.record.disposition == "abandoned"
    assert gone.conversation is not None and gone.conversation.queued_at is not None


async def test_hang_up_while_leaving_a_message(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path], tmp_path: Path
) -> None:
    """The caller speaks after the tone and hangs up instead of pressing #: the message
    counts, the CDR says ``message`` and so does the closed conversation."""
    await set_queue(db_url, hub, max_wait=1)
    speech = read_pcm(voices["caller"].with_suffix(".wav"))
    pcap = tmp_path / "message.pcap"
    seconds = write_rtp_pcap((speech + bytes(2 * 8000)) * 2, pcap, line_noise=30)
    # English (the shorter prompts): the message prompt ends about 20 s in; speak from
    # 18 s on (the recording takes what comes after the tone) and hang up as the audio ends.
    keys: list[Step] = [(2500, "2"), (1500, "0"), (14000, pcap), (int(seconds * 1000), "")]
    await call(hub.app[VOICE].settings, "13500000007", keys)
    gone = await let_go(hub, admin, db_url, "13500000007")
    assert gone.path[-2:] == [("voicemail", "nobody_free"), ("message_saved", None)], gone.path
    assert gone.record.disposition == "message"
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        tickets = list(
            (
                await session.execute(
                    select(Ticket).where(Ticket.conversation_id == gone.record.conversation_id)
                )
            ).scalars()
        )
        recording = (
            await session.execute(select(Recording).where(Recording.call_id == gone.record.id))
        ).scalar_one()
    await engine.dispose()
    assert [t.kind for t in tickets] == ["message"]
    assert recording.ticket_id == str(tickets[0].id) and recording.file is not None
    seconds_kept = recording.duration_seconds
    assert seconds_kept is not None and seconds_kept >= 2, seconds_kept


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
@pytest.mark.hub(bot=True)
async def test_hang_up_while_the_bot_talks(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    """English, 1 (a report): the bot's form opens with a long introduction; the caller
    hangs up during it, never having asked for a person."""
    await call(hub.app[VOICE].settings, "13500000008", [(2500, "2"), (1500, "1"), (7000, "")])
    gone = await let_go(hub, admin, db_url, "13500000008")
    assert ("bot", "report_crime") in gone.path, gone.path
    assert not [s for s, _ in gone.path if s in ("bot_turn", "handoff")], gone.path
    assert gone.record.disposition == "caller_hangup"
    assert gone.conversation is not None and gone.conversation.queued_at is None


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
@pytest.mark.hub(bot=True)
async def test_hang_up_while_the_bot_hands_off(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    """0 during the bot's first question: the bot hands off (the hub queues the
    conversation) and says so (about 9 s); the caller hangs up while it does, before the
    IVR takes the call to the queue."""
    keys: list[Step] = [(2500, "2"), (1500, "1"), (8000, "0"), (1000, "0"), (3000, "")]
    await call(hub.app[VOICE].settings, "13500000009", keys)
    gone = await let_go(hub, admin, db_url, "13500000009")
    assert ("bot_turn", "agent") in gone.path, gone.path
    assert gone.path[-1] == ("abandoned", None), gone.path
    assert not [s for s, _ in gone.path if s == "handoff"], gone.path  # never reached connect
    assert gone.record.disposition == "abandoned"
    assert gone.conversation is not None and gone.conversation.queued_at is not None


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
@pytest.mark.hub(bot=True)
async def test_hang_up_while_the_bot_takes_the_request(
    hub: TestServer, admin: StaffClient, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0, and gone 40 ms later: the hang-up comes while the hub is still in the bot's turn
    that hands off. The conversation is closed only once that turn is over; closed at
    once, the handoff would reopen and queue it (measured: left ``queued``)."""
    caplog.set_level("INFO", logger="voice_ivr.ivr")
    keys: list[Step] = [(2500, "2"), (1500, "1"), (8000, "0"), (40, "")]
    await call(hub.app[VOICE].settings, "13500000010", keys)
    gone = await let_go(hub, admin, db_url, "13500000010")
    assert ("bot_turn", "agent") in gone.path and gone.path[-1] == ("abandoned", None), gone.path
    assert gone.record.disposition == "abandoned"
    waited = [r for r in caplog.records if r.getMessage().startswith("call over in a bot turn")]
    assert waited, ("the hang-up did not come during the bot's turn", gone.record.ivr_path)
