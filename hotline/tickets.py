"""Tickets: turn a completed intake into a case with a code and PIN; answer status lookups.

Status lookups are throttled per case code and per conversation (5 failures lock for
15 minutes) and answer identically whether or not a code exists, so the lookup can't be
used to probe for cases.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline import casecode
from hotline.audit import record
from hotline.deadlines import due_dates
from hotline.store.models import LookupThrottle, Ticket, TicketKind, TicketStatus, utcnow
from hotline.vault import Identity, IdentityVault

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
CHINA = ZoneInfo("Asia/Shanghai")

# Fields the intake may send; anything else is dropped so a crafted payload can't
# smuggle data (an identity, say) into the ticket text.
TICKET_FIELDS = frozenset(
    {"person", "unit", "position", "details", "time", "place", "evidence", "summary"}
)
_MAX_FIELD = 4000


@dataclass(frozen=True)
class NewCase:
    ticket_id: int
    case_code: str
    pin: str
    reply_due: dt.date
    result_due: dt.date


class LookupOutcome(enum.Enum):
    FOUND = "found"
    NO_MATCH = "no_match"  # wrong code or wrong PIN: deliberately indistinguishable
    LOCKED = "locked"


@dataclass(frozen=True)
class Lookup:
    outcome: LookupOutcome
    ticket: Ticket | None = None
    attempts_left: int = 0
    locked_until: dt.datetime | None = None


def _clean_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in fields.items():
        if key in TICKET_FIELDS and isinstance(value, str) and value.strip():
            out[key] = value.strip()[:_MAX_FIELD]
    return out


class TicketService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: IdentityVault,
        holidays: frozenset[str] = frozenset(),
    ) -> None:
        self._sessions = sessions
        self.vault = vault
        self._holidays = holidays
        # Moderate cost: a 6-digit PIN has little entropy, so the hash is slow on purpose.
        self._hasher = PasswordHasher(time_cost=3, memory_cost=32768, parallelism=1)
        self._dummy_hash = self._hasher.hash("000000")

    async def create(
        self,
        *,
        kind: TicketKind,
        fields: Mapping[str, Any],
        identity: Identity | None,
        conversation_id: str | None,
        channel: str,
        language: str,
        actor: str = "bot",
        notify_reporter: bool = False,
    ) -> NewCase:
        pin = casecode.new_pin()
        pin_hash = await asyncio.to_thread(self._hasher.hash, pin)
        received = dt.datetime.now(CHINA).date()
        reply_due, result_due = due_dates(received, self._holidays)
        for _attempt in range(5):
            code = casecode.new_code()
            async with self._sessions() as session:
                identity_id = None
                if identity is not None:
                    row = self.vault.store(session, identity)
                    identity_id = row.id
                ticket = Ticket(
                    kind=kind.value,
                    case_code=code,
                    pin_hash=pin_hash,
                    fields=_clean_fields(fields),
                    identity_id=identity_id,
                    notify_reporter=notify_reporter and identity is not None,
                    conversation_id=conversation_id,
                    channel=channel,
                    language=language,
                    reply_due=reply_due,
                    result_due=result_due,
                )
                session.add(ticket)
                try:
                    await session.flush()
                except IntegrityError:  # case code collision: draw another
                    await session.rollback()
                    continue
                record(
                    session,
                    actor,
                    "ticket.create",
                    "ticket",
                    ticket.id,
                    kind=kind.value,
                    named=identity is not None,
                )
                await session.commit()
                log.info("ticket created", extra={"ticket_id": ticket.id, "kind": kind.value})
                return NewCase(ticket.id, code, pin, reply_due, result_due)
        raise RuntimeError("could not allocate a unique case code")

    async def filed_in(self, conversation_id: str) -> bool:
        """Whether a case was filed from this conversation (a letter's thread)."""
        async with self._sessions() as session:
            found = await session.execute(
                select(Ticket.id).where(Ticket.conversation_id == conversation_id).limit(1)
            )
            return found.first() is not None

    async def lookup(self, code: str, pin: str, conversation_id: str) -> Lookup:
        """Check a code and PIN, counting failures; a lost race on a new throttle row retries."""
        for _attempt in range(3):
            try:
                return await self._lookup(code.strip(), pin, conversation_id)
            except IntegrityError:
                continue
        raise RuntimeError("case status lookup kept conflicting")

    async def _lookup(self, code: str, pin: str, conversation_id: str) -> Lookup:
        keys = ("code:" + hashlib.sha256(code.encode()).hexdigest()[:64], "conv:" + conversation_id)
        now = utcnow()
        async with self._sessions() as session:
            throttles = [await self._throttle(session, key) for key in keys]
            locked = [t.locked_until for t in throttles if t.locked_until and t.locked_until > now]
            if locked:
                await session.commit()
                return Lookup(LookupOutcome.LOCKED, locked_until=max(locked))
            # Both paths do the same work until the PIN is right: the throttle rows above,
            # one small query (the hash only, so a long ticket costs no more to find than
            # a missing one), one argon2 verification (a dummy hash when there is no
            # ticket) and the same failure writes below. See docs/benchmarks.md.
            found = None
            if casecode.is_valid_code(code):
                found = (
                    await session.execute(
                        select(Ticket.id, Ticket.pin_hash).where(Ticket.case_code == code)
                    )
                ).one_or_none()
            ok = await asyncio.to_thread(
                self._verify, found.pin_hash if found is not None else self._dummy_hash, pin
            )
            ticket = await session.get(Ticket, found.id) if found is not None and ok else None
            if ticket is not None:
                for t in throttles:
                    t.failures, t.locked_until = 0, None
                record(
                    session,
                    "citizen",
                    "ticket.status_lookup",
                    "ticket",
                    ticket.id,
                    conversation=conversation_id,
                )
                await session.commit()
                return Lookup(LookupOutcome.FOUND, ticket=ticket)
            left = MAX_FAILURES
            lock_until = None
            for t in throttles:
                if t.last_failure and now - t.last_failure > LOCK_FOR:
                    t.failures = 0
                t.failures += 1
                t.last_failure = now
                if t.failures >= MAX_FAILURES:
                    t.failures, t.locked_until = 0, now + LOCK_FOR
                    lock_until = t.locked_until
                left = min(left, MAX_FAILURES - t.failures)
            record(
                session, "citizen", "ticket.status_lookup_failed", "conversation", conversation_id
            )
            await session.commit()
            if lock_until is not None:
                return Lookup(LookupOutcome.LOCKED, locked_until=lock_until)
            return Lookup(LookupOutcome.NO_MATCH, attempts_left=left)

    def _verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return bool(self._hasher.verify(pin_hash, pin))
        except VerificationError:
            return False

    @staticmethod
    async def _throttle(session: AsyncSession, key: str) -> LookupThrottle:
        row = await session.get(LookupThrottle, key, with_for_update=True)
        if row is None:
            row = LookupThrottle(key=key, failures=0)
            session.add(row)
        return row


PUBLIC_STATUS: dict[str, dict[str, str]] = {
    TicketStatus.RECEIVED: {"zh": "已登记，等待审查", "en": "registered, awaiting review"},
    TicketStatus.UNDER_REVIEW: {"zh": "正在审查", "en": "under review"},
    TicketStatus.ACCEPTED: {"zh": "已受理，正在办理", "en": "accepted and being handled"},
    TicketStatus.TRANSFERRED: {
        "zh": "已移送有管辖权的机关办理",
        "en": "transferred to the competent authority",
    },
    TicketStatus.NOT_ACCEPTED: {
        "zh": "不予受理（将书面告知理由）",
        "en": "not accepted (the reasons will be given in writing)",
    },
    TicketStatus.CONCLUDED: {"zh": "已办结", "en": "concluded"},
}
