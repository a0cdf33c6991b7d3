"""The group-send scheduler: hands due messages to Kannel at the link's rate.

Exactly once
------------
Kannel's ``sendsms`` is not idempotent (no client message id, nothing to ask later), so
every message row goes ``queued → sending`` (a claim: random token and time, committed)
*before* the HTTP call and ``sending → sent`` after Kannel accepted it. The claim is a
conditional UPDATE, so two schedulers never both send a row. Each message carries its
row and claim to Kannel twice: in its delivery-report URL, whose reports come back on
``/channels/sms/campaign-dlr`` and move the row forward only (``sent → delivered |
failed``, in whatever order they arrive), and as ``binfo``, which bearerbox writes in its
access log when it hands the message to the SMSC.

A row still ``sending`` when the scheduler starts was being handed to Kannel when the
hub died, and one whose sendsms call timed out may or may not have reached Kannel. Both
become ``unknown`` and are settled by ``reconcile.Reconciler`` from bearerbox's status
and access log: sent, failed, or never taken and so queued again. Without them (an
external Kannel whose admin URL and access log are not configured) such rows stay
``unknown`` and are never sent again: a duplicate SMS to a citizen is worse than a
missing one, and the console shows the unknowns.
A row Kannel refused (HTTP error) is ``failed``; one that never reached Kannel
(connection refused) goes back to ``queued`` and is tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from sqlalchemy import Table, bindparam, case, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_connectors.sms.campaigns import service
from channel_connectors.sms.campaigns.models import (
    MessageState,
    SendState,
    SmsSend,
    SmsSendMessage,
)
from channel_connectors.sms.campaigns.reconcile import CHECKING, UNTOLD, Reconciler, binfo
from channel_connectors.sms.campaigns.settings import CampaignSettings
from channel_connectors.sms.kannel import DLR_STATES, KannelAdmin, KannelClient, SendError
from hotline.store.models import UTCDateTime, utcnow

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DLR_PATH = "/channels/sms/campaign-dlr"
# Kannel fills in %d (the report type) and %A (the SMSC's answer) when it calls back.
_DLR_ESCAPES = "s=%d"
LINK_PAUSE = 5.0  # seconds to wait after Kannel could not be reached at all


@dataclass(frozen=True)
class Link:
    """How to reach Kannel and how Kannel reaches us (from the SMS channel's settings)."""

    sendsms_url: str
    user: str
    password: str
    sender: str
    max_segments: int
    public_url: str  # the hub as Kannel sees it
    secret: str  # Kannel's callbacks carry it as HTTP basic credentials kannel:<secret>
    allow: tuple[Network, ...] = ()  # where Kannel's callbacks may come from
    admin_url: str = ""  # bearerbox's admin interface (its status) ...
    admin_password: str = ""
    access_log: Path | None = None  # ... and its access log: unknown rows are settled

    @classmethod
    def from_sms(cls, sms: Any) -> Link:
        """From ``channel_connectors.sms.settings.SmsSettings``."""
        return cls(
            sendsms_url=sms.sendsms_url,
            user=sms.sendsms_user,
            password=sms.sendsms_password,
            sender=sms.sender,
            max_segments=sms.max_segments,
            public_url=sms.public_url,
            secret=sms.inbound_secret,
            allow=tuple(sms.inbound_allow),
            admin_url=sms.admin_url,
            admin_password=sms.admin_password,
            access_log=sms.access_log,
        )

    def dlr_url(self, message_id: int, token: str) -> str:
        query = urlencode({"m": str(message_id), "k": token}) + "&" + _DLR_ESCAPES
        parts = urlsplit(f"{self.public_url}{DLR_PATH}?{query}")
        netloc = f"kannel:{self.secret}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class Pacer:
    """Releases callers one at a time, ``1/rate`` seconds apart.

    The schedule is kept (a release a little late does not push every later one back),
    but a caller more than one interval late starts a new schedule instead of being
    followed by a burst: in any second at most ``rate`` + 1 are released.
    """

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._last = -1e9
        self._lock = asyncio.Lock()

    async def slot(self) -> None:
        async with self._lock:
            target = self._last + self.interval
            now = self._clock()
            if now < target:
                await asyncio.sleep(target - now)
                self._last = target
            elif now - target < self.interval:
                self._last = target
            else:
                self._last = now

    def pause(self, seconds: float) -> None:
        """No release before ``seconds`` from now."""
        self._last = max(self._last, self._clock() + seconds - self.interval)


# What a delivery report does to a row: the states it may move from, and to.
_FINAL_FROM = (MessageState.SENDING, MessageState.SENT, MessageState.UNKNOWN)
_ACK_FROM = (MessageState.SENDING, MessageState.UNKNOWN)
_MESSAGES = cast(Table, SmsSendMessage.__table__)  # Core statements: one UPDATE, or executemany


def report_state(code: int) -> str | None:
    return DLR_STATES.get(code)


def _report_statements() -> tuple[Any, Any]:
    """(final, interim): one UPDATE each, run for many reports at once (executemany).

    Every column is a CASE on the state the row had, so reports arriving in any order
    (delivered before smsc_ack, as Kannel's fake SMSC sends them) never move a row back.
    """
    m = _MESSAGES.c
    where = (m.id == bindparam("b_id"), m.claim_token == bindparam("b_token"))
    # OR of equalities, not IN: an expanding IN cannot run as executemany.
    moves = or_(*(m.state == s.value for s in _FINAL_FROM))
    final = (
        update(_MESSAGES)
        .where(*where)
        .values(
            state=case((moves, bindparam("b_state")), else_=m.state),
            error=case((moves, bindparam("b_error")), else_=m.error),
            report=case((moves, bindparam("b_name")), else_=m.report),
            report_at=case((moves, bindparam("b_at", type_=UTCDateTime())), else_=m.report_at),
        )
    )
    acked = or_(*(m.state == s.value for s in _ACK_FROM))
    noted = or_(acked, m.state == MessageState.SENT.value)
    interim = (
        update(_MESSAGES)
        .where(*where)
        .values(
            state=case((acked, MessageState.SENT.value), else_=m.state),
            error=case((acked, None), else_=m.error),
            report=case((noted, bindparam("b_name")), else_=m.report),
            report_at=case((noted, bindparam("b_at", type_=UTCDateTime())), else_=m.report_at),
        )
    )
    return final, interim


_FINAL_STMT, _INTERIM_STMT = _report_statements()


async def apply_reports(
    session: AsyncSession, reports: list[tuple[int, str, int]]
) -> set[tuple[int, str]]:
    """Record Kannel's delivery reports ``(row id, claim token, %d code)`` in the
    caller's transaction; returns the (id, token) pairs that matched a claim."""
    ids = sorted({i for i, _t, _c in reports})
    claims: set[tuple[int, str]] = set()
    m = _MESSAGES.c
    for k in range(0, len(ids), 500):
        rows = await session.execute(select(m.id, m.claim_token).where(m.id.in_(ids[k : k + 500])))
        claims |= {(int(i), str(t)) for i, t in rows if t}
    now = utcnow()
    final: list[dict[str, Any]] = []
    interim: list[dict[str, Any]] = []
    for message_id, token, code in reports:
        name = report_state(code)
        if name is None or (message_id, token) not in claims:
            continue
        row: dict[str, Any] = {"b_id": message_id, "b_token": token, "b_name": name, "b_at": now}
        if name in ("delivered", "failed", "smsc_reject"):
            ok = name == "delivered"
            row["b_state"] = (MessageState.DELIVERED if ok else MessageState.FAILED).value
            row["b_error"] = None if ok else f"report: {name}"
            final.append(row)
        else:  # smsc_ack, buffered: Kannel has it
            interim.append(row)
    if interim:
        await session.execute(_INTERIM_STMT, interim)
    if final:
        await session.execute(_FINAL_STMT, final)
    return {(i, t) for i, t, c in reports if (i, t) in claims and report_state(c) is not None}


async def apply_report(
    sessions: async_sessionmaker[AsyncSession], message_id: int, token: str, code: int
) -> bool:
    """One report in its own transaction; False if it matches no claim."""
    async with sessions() as session:
        matched = await apply_reports(session, [(message_id, token, code)])
        await session.commit()
    return bool(matched)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class CampaignScheduler:
    """One per hub. ``inflight`` tasks at once, each waiting for its slot of the
    pacer (the link's rate), then claiming its row and calling sendsms at once."""

    FLUSH_EVERY = 0.05  # seconds: ``sent`` marks are written in batches

    def __init__(self, settings: CampaignSettings, link: Link, timezone: str) -> None:
        self.settings = settings
        self.link = link
        self.timezone = timezone
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._kannel: KannelClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.inflight)
        self._pacer = Pacer(settings.rate, time.monotonic)
        self._sent: list[dict[str, Any]] = []
        self._sent_ready = asyncio.Event()
        self._reports: list[tuple[tuple[int, str, int], asyncio.Future[bool]]] = []
        self._reports_ready = asyncio.Event()
        self._reporter: asyncio.Task[None] | None = None
        self._reconciler: Reconciler | None = None
        self._recheck = asyncio.Event()
        self._checker: asyncio.Task[None] | None = None
        self.sent_count = 0

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._sessions is not None, "the scheduler has not started"
        return self._sessions

    async def start(
        self, sessions: async_sessionmaker[AsyncSession], http: aiohttp.ClientSession
    ) -> None:
        self._sessions = sessions
        self._kannel = KannelClient(
            http,
            self.link.sendsms_url,
            self.link.user,
            self.link.password,
            sender=self.link.sender,
            max_segments=self.link.max_segments,
        )
        if self.link.admin_url and self.link.access_log is not None:
            admin = KannelAdmin(http, self.link.admin_url, self.link.admin_password)
            self._reconciler = Reconciler(admin, self.link.access_log, sessions)
            self._checker = asyncio.create_task(self._check_loop(), name="sms-campaign-check")
        unknown = await self.recover()
        if unknown:
            log.warning("group send rows caught mid-hand-off", extra={"count": unknown})
        self._flusher = asyncio.create_task(self._flush_loop(), name="sms-campaign-sent")
        self._reporter = asyncio.create_task(self._report_loop(), name="sms-campaign-reports")
        self._task = asyncio.create_task(self._run(), name="sms-campaign-scheduler")

    async def stop(self) -> None:
        for task in (self._task,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        if self._inflight:
            # Each one is a claim, one HTTP call and a mark: let them finish.
            await asyncio.wait(self._inflight, timeout=10)
        for name in ("_flusher", "_reporter", "_checker"):
            task = getattr(self, name)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                setattr(self, name, None)
        await self._flush()
        await self._write_reports()

    def wake(self) -> None:
        self._wake.set()

    # ---------------------------------------------------------------- recovery
    async def recover(self) -> int:
        """Rows a dead hub left ``sending`` become ``unknown``: to be checked against
        Kannel's log, or (no log to read) never sent again."""
        async with self.sessions() as session:
            result = await session.execute(
                update(SmsSendMessage)
                .where(SmsSendMessage.state == MessageState.SENDING.value)
                .values(state=MessageState.UNKNOWN.value, error=self._unknown_note)
            )
            await session.commit()
        self._recheck.set()  # also what an earlier run left to check
        return _rowcount(result)

    @property
    def _unknown_note(self) -> str:
        return CHECKING if self._reconciler is not None else UNTOLD

    async def _check_loop(self) -> None:
        assert self._reconciler is not None
        while True:
            await self._recheck.wait()
            self._recheck.clear()
            try:
                settled = await self._reconciler.run()
            except Exception:  # the database, say: the rows stay unknown; try again
                log.exception("group send: checking unknown rows against kannel failed")
                await asyncio.sleep(self.settings.poll * 5)
                self._recheck.set()
                continue
            if settled.get("absent"):
                self.wake()

    # ---------------------------------------------------------------- the loop
    async def _run(self) -> None:
        while True:
            try:
                await self._activate_due()
                batch = await self._next_batch()
                if not batch:
                    await self._finish_done()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll)
                    continue
                for row in batch:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(*row))
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                # The rows just handed out must be claimed before the next look.
                if self._inflight:
                    await asyncio.wait(set(self._inflight))
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away, say; try again shortly
                log.exception("group send scheduler pass failed")
                await asyncio.sleep(self.settings.poll)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("group send delivery failed", exc_info=task.exception())

    async def _activate_due(self) -> None:
        now = utcnow()
        async with self.sessions() as session:
            due = list(
                await session.scalars(
                    select(SmsSend.id).where(
                        SmsSend.state == SendState.SCHEDULED.value, SmsSend.scheduled_at <= now
                    )
                )
            )
            for send_id in due:
                started = await session.execute(
                    update(SmsSend)
                    .where(SmsSend.id == send_id, SmsSend.state == SendState.SCHEDULED.value)
                    .values(state=SendState.SENDING.value, started_at=now)
                )
                if _rowcount(started):
                    await self._skip_excluded(session, send_id)
            await session.commit()

    async def _skip_excluded(self, session: AsyncSession, send_id: str) -> None:
        """Numbers that opted out or were blacklisted since the send was created."""
        phones = list(
            await session.scalars(
                select(SmsSendMessage.phone).where(
                    SmsSendMessage.send_id == send_id,
                    SmsSendMessage.state == MessageState.QUEUED.value,
                )
            )
        )
        excluded = await service.exclusions(session, phones)
        gone = sorted(excluded.opted_out | excluded.blacklisted)
        for i in range(0, len(gone), 500):
            await session.execute(
                update(SmsSendMessage)
                .where(
                    SmsSendMessage.send_id == send_id,
                    SmsSendMessage.state == MessageState.QUEUED.value,
                    SmsSendMessage.phone.in_(gone[i : i + 500]),
                )
                .values(state=MessageState.SKIPPED.value, error="opted out or blacklisted")
            )

    async def _next_batch(self) -> list[tuple[int, str, str]]:
        limit = max(self.settings.inflight * 4, min(int(self.settings.rate * 2), 2000))
        async with self.sessions() as session:
            rows = await session.execute(
                select(SmsSendMessage.id, SmsSendMessage.phone, SmsSendMessage.text)
                .join(SmsSend, SmsSend.id == SmsSendMessage.send_id)
                .where(
                    SmsSend.state == SendState.SENDING.value,
                    SmsSendMessage.state == MessageState.QUEUED.value,
                )
                .order_by(SmsSend.scheduled_at, SmsSendMessage.id)
                .limit(limit)
            )
            return [(int(i), str(p), str(t)) for i, p, t in rows]

    async def _finish_done(self) -> None:
        await self._flush()
        busy = exists().where(
            SmsSendMessage.send_id == SmsSend.id,
            SmsSendMessage.state.in_([MessageState.QUEUED.value, MessageState.SENDING.value]),
        )
        async with self.sessions() as session:
            await session.execute(
                update(SmsSend)
                .where(SmsSend.state == SendState.SENDING.value, ~busy)
                .values(state=SendState.DONE.value, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    # ---------------------------------------------------------------- one message
    async def _deliver(self, message_id: int, phone: str, text: str) -> None:
        assert self._kannel is not None
        token = secrets.token_hex(8)
        # The slot comes first and the claim right at it: a task still waiting for its
        # slot holds no claim, so a crash leaves only rows really mid-call unknown.
        await self._pacer.slot()
        async with self.sessions() as session:
            claimed = await session.execute(
                update(SmsSendMessage)
                .where(
                    SmsSendMessage.id == message_id,
                    SmsSendMessage.state == MessageState.QUEUED.value,
                )
                .values(state=MessageState.SENDING.value, claim_token=token, claimed_at=utcnow())
            )
            await session.commit()
        if not _rowcount(claimed):
            return  # cancelled, or another scheduler has it
        try:
            await self._kannel.send(
                phone, text, self.link.dlr_url(message_id, token), binfo=binfo(message_id, token)
            )
        except SendError as exc:
            await self._failed(message_id, token, exc)
            return
        self._sent.append({"b_id": message_id, "b_token": token, "b_at": utcnow()})
        self._sent_ready.set()
        self.sent_count += 1

    async def _flush_loop(self) -> None:
        while True:
            await self._sent_ready.wait()
            await asyncio.sleep(self.FLUSH_EVERY)  # let a batch gather
            try:
                await self._flush()
            except Exception:  # the rows stay ``sending``; their reports still settle them
                log.exception("group send: marking sent failed")

    async def _flush(self) -> None:
        """``sending → sent`` for what Kannel accepted (a report may have come first)."""
        self._sent_ready.clear()
        batch, self._sent = self._sent, []
        if not batch:
            return
        m = _MESSAGES.c
        stmt = (
            update(_MESSAGES)
            .where(m.id == bindparam("b_id"), m.claim_token == bindparam("b_token"))
            .values(
                sent_at=bindparam("b_at", type_=UTCDateTime()),
                state=case(
                    (m.state == MessageState.SENDING.value, MessageState.SENT.value),
                    else_=m.state,
                ),
            )
        )
        async with self.sessions() as session:
            await session.execute(stmt, batch)
            await session.commit()

    # ---------------------------------------------------------------- reports
    async def report(self, message_id: int, token: str, code: int) -> bool:
        """Record a delivery report; returns once it is committed (so Kannel, told 200,
        never has to send it again), batched with the others arriving meanwhile."""
        if self._reporter is None:  # not running: write it alone
            return await apply_report(self.sessions, message_id, token, code)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reports.append(((message_id, token, code), done))
        self._reports_ready.set()
        return await done

    async def _report_loop(self) -> None:
        while True:
            await self._reports_ready.wait()
            await asyncio.sleep(self.FLUSH_EVERY / 2)  # let a batch gather
            await self._write_reports()

    async def _write_reports(self) -> None:
        self._reports_ready.clear()
        batch, self._reports = self._reports, []
        if not batch:
            return
        try:
            async with self.sessions() as session:
                matched = await apply_reports(session, [r for r, _f in batch])
                await session.commit()
        except Exception as exc:  # Kannel gets a 500 and tries again
            for _r, done in batch:
                if not done.done():
                    done.set_exception(exc)
            log.exception("group send: recording delivery reports failed")
            return
        for (message_id, token, _code), done in batch:
            if not done.done():
                done.set_result((message_id, token) in matched)

    async def _failed(self, message_id: int, token: str, exc: SendError) -> None:
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError):
            # The connection was refused: nothing reached Kannel, so it may go again.
            state, error = MessageState.QUEUED, None
            self._pacer.pause(LINK_PAUSE)
            log.warning("kannel unreachable; group send paused", extra={"seconds": LINK_PAUSE})
        elif cause is not None:
            # Timed out or cut off mid-request: Kannel may have it. Never twice.
            state, error = MessageState.UNKNOWN, self._unknown_note
        else:
            state, error = MessageState.FAILED, str(exc)[:200]  # Kannel said no
        async with self.sessions() as session:
            await session.execute(
                update(SmsSendMessage)
                .where(
                    SmsSendMessage.id == message_id,
                    SmsSendMessage.claim_token == token,
                    SmsSendMessage.state == MessageState.SENDING.value,
                )
                .values(
                    state=state.value,
                    error=error,
                    claim_token=None if state == MessageState.QUEUED else token,
                )
            )
            await session.commit()
        if state == MessageState.UNKNOWN:
            self._recheck.set()
