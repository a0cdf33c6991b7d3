"""An unknown case code and a wrong PIN must be the same event, step for step.

Both answer ``no_match`` (the reply can't tell a prober which codes exist), and, so that
timing can't either, both must do the same work: count a failure on the code's and the
conversation's throttle rows, verify one argon2 hash (a dummy one for a missing ticket),
write the same audit row, and lock out after the same number of tries. Timing itself is
measured by ``bench/lookup_timing.py`` (docs/benchmarks.md), not here. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline import casecode
from hotline.store.db import make_engine, migrate, sessionmaker
from hotline.store.models import AuditLog, LookupThrottle, TicketKind
from hotline.tickets import MAX_FAILURES, Lookup, LookupOutcome, TicketService
from hotline.vault import IdentityVault
from tests.conftest import SECRET


class RecordingTickets(TicketService):
    """The real service; it also notes which hash each lookup verified against."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions, IdentityVault(SECRET))
        self.verified: list[str] = []

    def _verify(self, pin_hash: str, pin: str) -> bool:
        self.verified.append("dummy" if pin_hash == self._dummy_hash else "ticket")
        return super()._verify(pin_hash, pin)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    await migrate(engine)
    yield sessionmaker(engine)
    await engine.dispose()


async def throttle(sessions: async_sessionmaker[AsyncSession], key: str) -> tuple[Any, ...]:
    async with sessions() as session:
        row = await session.get(LookupThrottle, key)
        assert row is not None, key
        return row.failures, row.locked_until is not None, row.last_failure is not None


def code_key(code: str) -> str:
    return "code:" + hashlib.sha256(code.encode()).hexdigest()[:64]


def shape(result: Lookup) -> tuple[Any, ...]:
    return result.outcome, result.attempts_left, result.ticket, result.locked_until is not None


async def test_unknown_code_and_wrong_pin_do_the_same_work(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tickets = RecordingTickets(sessions)
    case = await tickets.create(
        kind=TicketKind.REPORT,
        fields={"details": "县财政局局长收受贿赂" * 400},  # a long ticket is no slower to find
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    unknown = casecode.new_code()
    while unknown == case.case_code:
        unknown = casecode.new_code()
    assert casecode.is_valid_code(unknown)  # well-formed: only a lookup can tell it is unused
    wrong = "000000" if case.pin != "000000" else "111111"

    for attempt in range(1, MAX_FAILURES + 2):
        tickets.verified.clear()
        a = await tickets.lookup(unknown, wrong, f"probe-unknown-{attempt}")
        b = await tickets.lookup(case.case_code, wrong, f"probe-wrong-{attempt}")
        assert shape(a) == shape(b), attempt
        if attempt < MAX_FAILURES:
            assert a.outcome is LookupOutcome.NO_MATCH
            assert a.attempts_left == MAX_FAILURES - attempt
            # One argon2 verification each: the missing ticket's against the dummy hash.
            assert tickets.verified == ["dummy", "ticket"], attempt
            # The failure is counted on the code and on the conversation, alike.
            for key_a, key_b in (
                (code_key(unknown), code_key(case.case_code)),
                (f"conv:probe-unknown-{attempt}", f"conv:probe-wrong-{attempt}"),
            ):
                assert await throttle(sessions, key_a) == await throttle(sessions, key_b)
            assert await throttle(sessions, code_key(unknown)) == (attempt, False, True)
        elif attempt == MAX_FAILURES:
            # The fifth failure locks the code, whichever it is.
            assert a.outcome is LookupOutcome.LOCKED
            assert tickets.verified == ["dummy", "ticket"]
        else:
            # Locked: refused before any hash, both alike (and the right PIN too).
            assert a.outcome is LookupOutcome.LOCKED
            assert tickets.verified == []
            right = await tickets.lookup(case.case_code, case.pin, "probe-right")
            assert right.outcome is LookupOutcome.LOCKED

    # The same audit trail: one failed-lookup row per attempt that got as far as a PIN.
    async with sessions() as session:
        rows = (
            await session.execute(
                select(AuditLog.action, AuditLog.record_id).where(
                    AuditLog.action.like("ticket.status_lookup%")
                )
            )
        ).all()
    failed = sorted(record_id for action, record_id in rows if action.endswith("_failed"))
    assert failed == sorted(
        f"probe-{kind}-{n}" for kind in ("unknown", "wrong") for n in range(1, MAX_FAILURES + 1)
    )
    assert all(action == "ticket.status_lookup_failed" for action, _ in rows)


async def test_the_right_pin_still_finds_the_case(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tickets = RecordingTickets(sessions)
    case = await tickets.create(
        kind=TicketKind.COMPLAINT,
        fields={"details": "x"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="en",
    )
    found = await tickets.lookup(case.case_code, case.pin, "conv-right")
    assert found.outcome is LookupOutcome.FOUND and found.ticket is not None
    assert found.ticket.id == case.ticket_id and found.ticket.fields == {"details": "x"}
    assert tickets.verified == ["ticket"]
    # A malformed code (wrong check digit) costs a verification too.
    tickets.verified.clear()
    bad = case.case_code[:-1] + str((int(case.case_code[-1]) + 1) % 10)
    result = await tickets.lookup(bad, case.pin, "conv-malformed")
    assert result.outcome is LookupOutcome.NO_MATCH and tickets.verified == ["dummy"]
