"""Storage contract: every test runs on SQLite and on a real PostgreSQL (``db_url``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.conversations import ConversationStore
from hotline.store.db import make_engine, migrate, sessionmaker
from hotline.store.models import (
    AuditLog,
    LookupThrottle,
    Message,
    ReporterIdentity,
    Ticket,
    TicketKind,
)
from hotline.tickets import LookupOutcome, TicketService
from hotline.vault import Identity, IdentityVault
from tests.conftest import SECRET


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    await migrate(engine)
    await migrate(engine)  # idempotent: a second run is a no-op
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def tickets(sessions: async_sessionmaker[AsyncSession]) -> TicketService:
    return TicketService(sessions, IdentityVault(SECRET))


async def test_conversation_resume_and_history(sessions: async_sessionmaker[AsyncSession]) -> None:
    store = ConversationStore(sessions)
    conversation, token = await store.open("webchat", "zh")
    assert (await store.resume(token)).id == conversation.id  # type: ignore[union-attr]
    assert await store.resume("x" * 43) is None
    async with sessions() as session:
        first = Message(
            conversation_id=conversation.id, author="citizen", text="你好", client_id="c1"
        )
        assert await store.add_message(session, first) is not None
        again = Message(
            conversation_id=conversation.id, author="citizen", text="你好", client_id="c1"
        )
        assert await store.add_message(session, again) is None  # same client id: stored once
        await session.commit()
    history = await store.history(conversation.id)
    assert [m.text for m in history] == ["你好"]
    # The token itself is never stored, only its hash.
    async with sessions() as session:
        rows = (await session.execute(select(Message))).scalars().all()
        assert all(token not in (m.text or "") for m in rows)


async def test_ticket_keeps_identity_apart_and_encrypted(
    sessions: async_sessionmaker[AsyncSession], tickets: TicketService
) -> None:
    identity = Identity("金丝雀", "13912345678", "11010519491231002X")
    case = await tickets.create(
        kind=TicketKind.REPORT,
        fields={
            "unit": "县财政局",
            "details": "收受贿赂",
            "name": "金丝雀",
            "phone": "13912345678",
        },
        identity=identity,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    async with sessions() as session:
        ticket = await session.get(Ticket, case.ticket_id)
        assert ticket is not None
        assert ticket.fields == {"unit": "县财政局", "details": "收受贿赂"}  # unknown keys dropped
        assert ticket.case_code == case.case_code
        assert case.pin not in ticket.pin_hash and ticket.pin_hash.startswith("$argon2")
        assert ticket.reply_due > dt.date.today() - dt.timedelta(days=1)
        row = await session.get(ReporterIdentity, ticket.identity_id)
        assert row is not None
        assert "金丝雀".encode() not in row.ciphertext and b"13912345678" not in row.ciphertext
        vault = IdentityVault(SECRET)
        revealed = await vault.reveal(session, row.id, actor="agent:7", reason="follow-up call")
        await session.commit()
        assert (revealed.name, revealed.phone) == ("金丝雀", "13912345678")
        assert "金丝雀" not in repr(revealed)
        audits = (await session.execute(select(AuditLog))).scalars().all()
        reveal = [a for a in audits if a.action == "identity.reveal"]
        assert reveal and reveal[0].actor == "agent:7" and reveal[0].record_id == row.id
        with pytest.raises(Exception):  # noqa: B017 - any key but the right one fails
            await IdentityVault(bytes(32)).reveal(session, row.id, actor="x", reason="y")


async def test_status_lookup_and_lockout(
    sessions: async_sessionmaker[AsyncSession], tickets: TicketService
) -> None:
    case = await tickets.create(
        kind=TicketKind.COMPLAINT,
        fields={"details": "x"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="en",
    )
    found = await tickets.lookup(case.case_code, case.pin, "conv-a")
    assert found.outcome is LookupOutcome.FOUND and found.ticket is not None
    assert found.ticket.id == case.ticket_id
    wrong_pin = "000000" if case.pin != "000000" else "111111"
    outcomes = [await tickets.lookup(case.case_code, wrong_pin, f"conv-{i}") for i in range(5)]
    assert [o.outcome for o in outcomes[:4]] == [LookupOutcome.NO_MATCH] * 4
    assert [o.attempts_left for o in outcomes[:4]] == [4, 3, 2, 1]
    assert outcomes[4].outcome is LookupOutcome.LOCKED
    # Locked per case code: even the right PIN is refused for now, from any conversation.
    assert (
        await tickets.lookup(case.case_code, case.pin, "conv-new")
    ).outcome is LookupOutcome.LOCKED
    # After 15 minutes the lock lifts.
    async with sessions() as session:
        for row in (await session.execute(select(LookupThrottle))).scalars():
            if row.locked_until:
                row.locked_until = row.locked_until - dt.timedelta(minutes=16)
        await session.commit()
    assert (
        await tickets.lookup(case.case_code, case.pin, "conv-new")
    ).outcome is LookupOutcome.FOUND


async def test_unknown_code_looks_like_a_wrong_pin(tickets: TicketService) -> None:
    case = await tickets.create(
        kind=TicketKind.APPEAL,
        fields={},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    real = await tickets.lookup(
        case.case_code, "999999" if case.pin != "999999" else "888888", "c1"
    )
    fake = await tickets.lookup("100000000009", "123456", "c2")
    assert real.outcome is fake.outcome is LookupOutcome.NO_MATCH
    assert real.attempts_left == fake.attempts_left


async def test_conversation_lockout_across_codes(tickets: TicketService) -> None:
    outcomes = [
        (await tickets.lookup(f"1000000000{i:02d}", "123456", "same-conversation")).outcome
        for i in range(6)
    ]
    assert outcomes[4] is LookupOutcome.LOCKED and outcomes[5] is LookupOutcome.LOCKED
