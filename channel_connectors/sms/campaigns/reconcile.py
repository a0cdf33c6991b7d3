"""Settling the group-send messages a dead hub left in the middle of a hand-off to Kannel.

A message row is ``sending`` from its claim until Kannel's answer is recorded; a hub
killed in between leaves it there, and Kannel may or may not have taken it. Kannel's
``sendsms`` has no idempotency key and nothing to ask later, but every message carries
its row and claim as ``binfo`` and bearerbox writes the binfo of each message it hands
to the SMSC (or fails to) in its access log. Once bearerbox holds nothing more (its
queues, its links' queues and its store are empty), whatever smsbox took from the dead
hub has reached the SMSC or failed, and is in the log:

* ``Sent SMS`` → ``sent`` (its delivery report may still come and settle it further);
* ``Failed SMS`` → ``failed``;
* absent → it never reached Kannel: ``queued`` again, and the scheduler sends it once.

The wait for an idle bearerbox is what makes "absent" safe; a message smsbox accepted
just before the hub died reaches bearerbox within ``SETTLE`` seconds. A log that begins
after the row's claim (rotated since) cannot tell: that row stays ``unknown`` and is
never sent again, as are all of them with an external Kannel whose status and access
log the hub cannot read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_connectors.sms.campaigns.models import MessageState, SendState, SmsSend, SmsSendMessage
from channel_connectors.sms.kannel import KannelAdmin, SendError, read_access_log

log = logging.getLogger(__name__)

CHECKING = "the hub stopped while handing this message to Kannel; checking Kannel's log"
UNTOLD = "the hub stopped while handing this message to Kannel; not sent again"
SETTLE = 3.0  # seconds for a request smsbox took from the dead hub to reach bearerbox
POLL = 0.5  # seconds between looks at bearerbox's queues
IDLE_LOOKS = 2  # idle this many looks in a row


def binfo(message_id: int, token: str) -> str:
    """What a message carries through Kannel to its access log: its row and claim."""
    return f"{message_id}.{token}"


class Reconciler:
    def __init__(
        self,
        admin: KannelAdmin,
        access_log: Path,
        sessions: async_sessionmaker[AsyncSession],
        *,
        settle: float = SETTLE,
    ) -> None:
        self.admin = admin
        self.access_log = access_log
        self.sessions = sessions
        self.settle = settle

    async def run(self) -> dict[str, int]:
        """Settle every row marked ``CHECKING``; how many went which way."""
        rows = await self._checking()
        if not rows:
            return {}
        await asyncio.sleep(self.settle)
        await self._wait_idle()
        wanted = {binfo(i, t): (i, t, c) for i, t, c in rows}
        try:
            told = await asyncio.to_thread(read_access_log, self.access_log, wanted)
        except OSError as exc:
            log.warning("kannel's access log unreadable", extra={"error": type(exc).__name__})
            return await self._settle({key: "untold" for key in wanted}, wanted)
        verdicts: dict[str, str] = {}
        for key, (_i, _t, claimed) in wanted.items():
            if key in told.outcomes:
                verdicts[key] = told.outcomes[key]
            elif told.since is None or told.since > claimed + dt.timedelta(seconds=1):
                verdicts[key] = "untold"  # the log was started (rotated) after the claim
            else:
                verdicts[key] = "absent"
        return await self._settle(verdicts, wanted)

    async def _checking(self) -> list[tuple[int, str, dt.datetime]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(
                    SmsSendMessage.id, SmsSendMessage.claim_token, SmsSendMessage.claimed_at
                ).where(
                    SmsSendMessage.state == MessageState.UNKNOWN.value,
                    SmsSendMessage.error == CHECKING,
                )
            )
            return [(int(i), str(t), c) for i, t, c in rows if t and c is not None]

    async def _wait_idle(self) -> None:
        """Until bearerbox holds no message, ``IDLE_LOOKS`` looks in a row."""
        idle, warned = 0, False
        while idle < IDLE_LOOKS:
            try:
                queues = await self.admin.queues()
            except (SendError, OSError, TimeoutError) as exc:
                if not warned:
                    log.warning("kannel status unreachable; group send rows wait", exc_info=exc)
                    warned = True
                idle = 0
                await asyncio.sleep(POLL * 4)
                continue
            idle = idle + 1 if queues.idle else 0
            if idle < IDLE_LOOKS:
                await asyncio.sleep(POLL)

    async def _settle(
        self, verdicts: dict[str, str], rows: dict[str, tuple[int, str, dt.datetime]]
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with self.sessions() as session:
            for key, verdict in verdicts.items():
                message_id, token, claimed = rows[key]
                if await self._apply(session, message_id, token, claimed, verdict):
                    counts[verdict] = counts.get(verdict, 0) + 1
            await session.commit()
        log.info("group send rows settled from kannel's log", extra={"counts": counts})
        return counts

    @staticmethod
    async def _apply(
        session: AsyncSession, message_id: int, token: str, claimed: dt.datetime, verdict: str
    ) -> bool:
        values: dict[str, object]
        if verdict == "sent":
            values = {"state": MessageState.SENT.value, "error": None, "sent_at": claimed}
        elif verdict == "failed":
            values = {"state": MessageState.FAILED.value, "error": "Kannel's log: failed"}
        elif verdict == "untold":
            values = {"error": UNTOLD}
        else:  # never reached Kannel: it goes again, under a new claim
            send = await session.scalar(
                select(SmsSend)
                .join(SmsSendMessage, SmsSendMessage.send_id == SmsSend.id)
                .where(SmsSendMessage.id == message_id)
            )
            if send is not None and send.state == SendState.CANCELLED.value:
                values = {"state": MessageState.CANCELLED.value, "error": None}
            else:
                values = {"state": MessageState.QUEUED.value, "error": None, "claim_token": None}
                if send is not None and send.state == SendState.DONE.value:
                    send.state, send.finished_at = SendState.SENDING.value, None
        result = await session.execute(
            update(SmsSendMessage)
            .where(
                SmsSendMessage.id == message_id,
                SmsSendMessage.claim_token == token,
                SmsSendMessage.state == MessageState.UNKNOWN.value,
                SmsSendMessage.error == CHECKING,
            )
            .values(**values)
        )
        return bool(getattr(result, "rowcount", 0))
