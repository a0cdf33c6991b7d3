"""The ACD service: persists the engine's state and carries out its decisions.

The engine (``hotline.acd.engine``) decides; this module is its hands. It is the one
place that feeds the engine events (under one lock, so two agents racing for the same
offer are decided one after the other), stores what the decisions change in the same
transaction, and only then tells agents and citizens. After a crash ``start`` rebuilds
the engine from the ``acd_*`` tables: presence, waiting contacts and assignments.
Offers are not stored; an offer in flight at the crash is simply made again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.acd.engine import (
    MEDIA,
    AcceptRefused,
    AcdEngine,
    AgentStateChanged,
    AgentStatus,
    Assigned,
    ContactArrived,
    ContactEnded,
    Decision,
    Event,
    Fallback,
    Media,
    Membership,
    Offer,
    OfferAccepted,
    OfferRejected,
    OfferWithdrawn,
    Overflowed,
    QueueConfig,
    Refused,
    Released,
    Requeued,
    ScheduleWindow,
    Tick,
    Transfer,
)
from hotline.audit import record
from hotline.conversations import earlier_conversations
from hotline.orgs import OrgTree, read_tree
from hotline.store.models import (
    AcdContact,
    Blacklist,
    Contact,
    Conversation,
    ConversationState,
    Message,
    Queue,
    QueueMember,
    User,
)
from hotline.store.models import AgentStatus as AgentStatusRow

if TYPE_CHECKING:
    from hotline.channels import ChannelRegistry

log = logging.getLogger(__name__)

VIP_PRIORITY = 2
CALLBACK_PRIORITY = 1  # a repeat contact whose last try found no agent
_CALLBACK_WINDOW = dt.timedelta(hours=24)


class AgentPush(Protocol):
    """The agent side of the WebSocket hub."""

    async def to_agent(self, user_id: str, frame: dict[str, Any]) -> None: ...

    async def to_staff(self, frame: dict[str, Any]) -> None: ...


class CitizenSide(Protocol):
    """What the service needs from the conversation hub."""

    @property
    def channels(self) -> ChannelRegistry:
        """The channels, for the media kind each declares (what the ACD routes by)."""
        ...

    async def set_state(
        self, conversation_id: str, state: ConversationState, reason: str | None = None
    ) -> None: ...

    async def say_to(self, conversation_id: str, key: str, **values: Any) -> Any: ...

    async def ask_rating(self, conversation_id: str) -> None: ...

    async def queue_position(self, conversation_id: str, position: int, eta: int) -> None: ...


class PhoneSide(Protocol):
    """Realtime contacts (calls): an offer rings the agent's phone, a withdrawn one stops it."""

    async def offered(self, conversation_id: str, agent_id: str, expires_at: float) -> None: ...

    async def withdrawn(self, conversation_id: str, agent_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AcceptResult:
    ok: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StaffInfo:
    username: str
    display_name: str | None
    org_unit_id: str


def _ts(moment: dt.datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _stored_media(value: str) -> Media:
    """``acd_contact.channel`` holds the media kind. Rows written before migration 0006
    hold "chat" or the name of the one call channel there was: that is a realtime contact."""
    for media in MEDIA:
        if value == media:
            return media
    return "realtime"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def schedule_windows(raw: Sequence[dict[str, Any]] | None) -> tuple[ScheduleWindow, ...]:
    return tuple(
        ScheduleWindow(
            frozenset(int(d) for d in item["weekdays"]),
            _minutes(str(item["start"])),
            _minutes(str(item["end"])),
        )
        for item in raw or ()
    )


class AcdService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        citizens: CitizenSide,
        *,
        timezone: str = "Asia/Shanghai",
        tick_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._citizens = citizens
        self._zone = ZoneInfo(timezone)
        self._tick_seconds = tick_seconds
        self._clock = clock
        self._engine = AcdEngine(local_time=self._local_time)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.push: AgentPush | None = None
        self.phones: PhoneSide | None = None
        self.staff: dict[str, StaffInfo] = {}
        self.queues: dict[str, Queue] = {}
        self._inside: set[str] = set()  # conversation ids the engine holds
        self._positions: dict[str, tuple[int, int]] = {}
        self._offers: dict[str, dict[str, Any]] = {}  # conversation id -> offer frame
        self._last_stats: list[dict[str, Any]] = []
        self._capacity: dict[str, int] = {}
        self._tree = OrgTree({})

    def _local_time(self, now: float) -> tuple[int, int]:
        local = dt.datetime.fromtimestamp(now, self._zone)
        return local.weekday(), local.hour * 60 + local.minute

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Load configuration, restore agents and contacts from storage, start the timer."""
        async with self._lock:
            await self._configure()
            async with self._sessions() as session:
                for status in (await session.execute(select(AgentStatusRow))).scalars():
                    user = self.staff.get(status.user_id)
                    if user is None:
                        continue
                    self._engine.restore_agent(
                        status.user_id,
                        capacity=self._capacity.get(status.user_id, 3),
                        presence=status.presence,  # type: ignore[arg-type]
                        reason=status.reason,
                        since=_ts(status.since),
                        answered=status.answered,
                    )
                contacts = (
                    await session.execute(select(AcdContact).order_by(AcdContact.arrived_at))
                ).scalars()
                for row in contacts:
                    self._engine.restore_contact(
                        row.conversation_id,
                        row.queue_id,
                        priority=row.priority,
                        media=_stored_media(row.channel),
                        arrived_at=_ts(row.arrived_at),
                        entered_queue_at=_ts(row.entered_queue_at),
                        visited=row.visited,
                        agent_id=row.agent_id,
                        last_agent_id=row.last_agent_id,
                        target_agent_id=row.target_agent_id,
                    )
                    self._inside.add(row.conversation_id)
            restored = len(self._inside)
            await self._run(Tick(self._clock()))
        log.info("acd started", extra={"contacts": restored, "agents": len(self.staff)})
        self._task = asyncio.create_task(self._ticker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            try:
                async with self._lock:
                    await self._run(Tick(self._clock()))
                await self._publish_positions()
            except Exception:
                log.exception("acd tick failed")

    async def reload(self) -> None:
        """Re-read queues, memberships, agents and the blacklist; reconfigure the engine."""
        async with self._lock:
            await self._configure()
            await self._run(Tick(self._clock()))

    async def _configure(self) -> None:
        async with self._sessions() as session:
            queues = list((await session.execute(select(Queue))).scalars())
            users = list((await session.execute(select(User))).scalars())
            members = list(
                (
                    await session.execute(
                        select(QueueMember).order_by(QueueMember.position, QueueMember.user_id)
                    )
                ).scalars()
            )
            blacklist = list((await session.execute(select(Blacklist.contact_id))).scalars())
            self._tree = await read_tree(session)
            statuses = {
                s.user_id: s for s in (await session.execute(select(AgentStatusRow))).scalars()
            }
        decisions: list[Decision] = []
        for gone in set(self.queues) - {q.id for q in queues}:
            decisions.extend(self._engine.remove_queue(gone))
        self.queues = {q.id: q for q in queues}
        for queue in queues:
            self._engine.set_queue(
                QueueConfig(
                    id=queue.id,
                    strategy=queue.strategy,  # type: ignore[arg-type]
                    overflow_to=queue.overflow_to,
                    overflow_after=queue.overflow_after,
                    max_wait=queue.max_wait,
                    offer_timeout=float(queue.offer_timeout),
                    wrap_up=float(queue.wrap_up),
                    sticky_window=float(queue.sticky_window),
                )
            )
        self._capacity = {u.id: u.capacity for u in users}
        by_agent: dict[str, list[Membership]] = {}
        unit_of = {u.id: u.org_unit_id for u in users}
        for m in members:
            target = self.queues.get(m.queue_id)
            # Offers only where the agent may open the conversation: queues of their units.
            if target is not None and target.org_unit_id in self._tree.subtree(
                unit_of.get(m.user_id, "")
            ):
                by_agent.setdefault(m.user_id, []).append(
                    Membership(m.user_id, m.queue_id, m.penalty, schedule_windows(m.schedule))
                )
        staff: dict[str, StaffInfo] = {}
        now = self._clock()
        for user in users:
            if user.id not in statuses:
                continue  # not an agent (admins, editors)
            # Calls ring a phone: only agents who were issued one are offered calls.
            self._engine.set_agent(
                user.id,
                capacity=user.capacity,
                phone=user.sip_ha1 is not None,
                deferred_capacity=user.deferred_capacity,
            )
            self._engine.set_memberships(user.id, by_agent.get(user.id, []))
            if user.active:
                staff[user.id] = StaffInfo(user.username, user.display_name, user.org_unit_id)
            elif user.id in self.staff:
                decisions.extend(self._engine.handle(AgentStatus(user.id, "offline", now)))
        by_queue: dict[str, list[str]] = {}
        for m in members:  # ordered by position: the queue's "linear" order
            by_queue.setdefault(m.queue_id, []).append(m.user_id)
        for queue_id, agent_ids in by_queue.items():
            if queue_id in self.queues:
                self._engine.set_member_order(queue_id, agent_ids)
        self.staff = staff
        self._engine.set_blacklist(blacklist)
        await self._apply(decisions)

    # ---------------------------------------------------------------- inputs
    async def enqueue(self, conversation_id: str) -> None:
        """A conversation needs a person: pick its queue and priority, and queue it."""
        now = self._clock()
        async with self._lock:
            if conversation_id in self._inside:
                return
            async with self._sessions() as session:
                conversation = await session.get(Conversation, conversation_id)
                # Closed meanwhile (a caller who hung up as the bot handed off): not queued.
                if conversation is None or conversation.state == ConversationState.CLOSED.value:
                    return
                contact = await session.get(Contact, conversation.contact_id)
                queue_id = self.route(conversation)
                media = self.media(conversation.channel)
                priority, last_agent = await self._history(session, conversation, contact)
                session.add(
                    AcdContact(
                        conversation_id=conversation_id,
                        queue_id=queue_id,
                        priority=priority,
                        channel=media,  # the column keeps its name; it holds the media kind
                        arrived_at=_dt(now),
                        entered_queue_at=_dt(now),
                        visited=[queue_id],
                        last_agent_id=last_agent,
                    )
                )
                conversation.queue_id = queue_id
                conversation.queued_at = _dt(now)
                await session.commit()
            self._inside.add(conversation_id)
            log.info(
                "queued",
                extra={"conversation_id": conversation_id, "queue": queue_id, "priority": priority},
            )
            await self._run(
                ContactArrived(
                    conversation_id,
                    queue_id,
                    now,
                    priority=priority,
                    media=media,
                    key=conversation.contact_id,
                    last_agent_id=last_agent,
                )
            )
        await self._publish_positions()

    def media(self, channel: str) -> Media:
        """The media kind the channel declares: what the engine routes by. A channel that
        is not registered (switched off since) counts as chat."""
        capabilities = self._citizens.channels.capabilities(channel)
        return capabilities.media if capabilities is not None else "chat"

    def route(self, conversation: Conversation) -> str:
        """The most specific queue for the conversation's intent, language and unit.

        A queue that names intents or a language only takes matching conversations, and
        only queues of the conversation's unit or a unit above it qualify. Naming intents
        outweighs naming a language, which outweighs being the closer unit.
        """
        chain = [conversation.org_unit_id, *self._tree.ancestors(conversation.org_unit_id)]
        best, best_score = None, -1
        for queue in self.queues.values():
            if queue.intents and conversation.intent not in queue.intents:
                continue
            if queue.language and queue.language != conversation.language:
                continue
            if queue.org_unit_id not in chain:
                continue
            closeness = len(chain) - chain.index(queue.org_unit_id)
            score = (1000 if queue.intents else 0) + (100 if queue.language else 0) + closeness
            if score > best_score or (score == best_score and queue.is_default):
                best, best_score = queue.id, score
        if best is None:
            defaults = [q.id for q in self.queues.values() if q.is_default]
            best = defaults[0] if defaults else next(iter(self.queues))
        return best

    async def _history(
        self, session: AsyncSession, conversation: Conversation, contact: Contact | None
    ) -> tuple[int, str | None]:
        """Priority (VIP, or a callback for a repeat contact) and the last agent served."""
        previous = await earlier_conversations(session, conversation, 5)
        last_agent = next((p.agent_id for p in previous if p.agent_id), None)
        if contact is not None and contact.vip:
            return VIP_PRIORITY, last_agent
        cutoff = _dt(self._clock()) - _CALLBACK_WINDOW
        missed = any(
            p.queued_at is not None and p.queued_at > cutoff and p.assigned_at is None
            for p in previous
        )
        return (CALLBACK_PRIORITY if missed else 0), last_agent

    async def citizen_message(self, conversation_id: str, message_id: int) -> None:
        """Hand a stored citizen message to the agent holding the conversation."""
        view = self._engine.contact_view(conversation_id)
        if view is not None and view.state == "waiting":
            # Still waiting: the answer to "anyone there?" is the citizen's place in line.
            self._positions.pop(conversation_id, None)
            await self._publish_positions()
            return
        if view is None or view.agent_id is None or view.state != "assigned" or not self.push:
            return
        async with self._sessions() as session:
            message = await session.get(Message, message_id)
        if message is not None:
            await self.push.to_agent(
                view.agent_id,
                {
                    "type": "message",
                    "conversation_id": conversation_id,
                    "message": as_item(message),
                },
            )

    async def set_presence(
        self, user_id: str, presence: str, reason: str | None = None, *, by: str | None = None
    ) -> None:
        now = self._clock()
        async with self._lock:
            async with self._sessions() as session:
                row = await session.get(AgentStatusRow, user_id)
                if row is None:
                    row = AgentStatusRow(user_id=user_id)
                    session.add(row)
                row.presence, row.reason, row.since = presence, reason, _dt(now)
                if by is not None:
                    record(session, by, "agent.force_status", "user", user_id, status=presence)
                await session.commit()
            await self._run(AgentStatus(user_id, presence, now, reason=reason))  # type: ignore[arg-type]
        await self._publish_positions()

    async def accept(self, conversation_id: str, user_id: str) -> AcceptResult:
        async with self._lock:
            decisions = await self._run(OfferAccepted(conversation_id, user_id, self._clock()))
        for d in decisions:
            if isinstance(d, AcceptRefused) and d.agent_id == user_id:
                return AcceptResult(False, d.reason)
        await self._publish_positions()
        return AcceptResult(True)

    async def reject(self, conversation_id: str, user_id: str) -> bool:
        view = self._engine.contact_view(conversation_id)
        if view is None or view.state != "offered" or view.agent_id != user_id:
            return False
        async with self._lock:
            await self._run(OfferRejected(conversation_id, user_id, self._clock()))
        return True

    async def transfer(
        self, conversation_id: str, *, queue_id: str | None, agent_id: str | None
    ) -> None:
        async with self._lock:
            await self._run(
                Transfer(conversation_id, self._clock(), to_queue_id=queue_id, to_agent_id=agent_id)
            )
        await self._publish_positions()

    async def close(self, conversation_id: str, disposition: str, *, by: str) -> None:
        """The agent ends the conversation: free the agent, then ask the citizen to rate."""
        view = self._engine.contact_view(conversation_id)
        holder = view.agent_id if view is not None and view.state == "assigned" else None
        async with self._lock:
            await self._run(ContactEnded(conversation_id, self._clock()))
            async with self._sessions() as session:
                row = await session.get(Conversation, conversation_id)
                if row is not None:
                    row.state = ConversationState.CLOSED.value  # under the lock: see enqueue
                    row.closed_at = _dt(self._clock())
                    row.disposition = disposition
                    row.awaiting_rating = True
                    record(session, by, "conversation.close", "conversation", conversation_id)
                    await session.commit()
        await self._citizens.set_state(conversation_id, ConversationState.CLOSED)
        await self._citizens.ask_rating(conversation_id)
        if self.push is not None and holder is not None:
            await self.push.to_agent(holder, {"type": "closed", "conversation_id": conversation_id})

    # ----------------------------------------------------------------- views
    def contact_view(self, conversation_id: str) -> Any:
        return self._engine.contact_view(conversation_id)

    def agent_view(self, user_id: str) -> Any:
        return self._engine.agent_view(user_id)

    def status_json(self, user_id: str) -> dict[str, Any]:
        view = self._engine.agent_view(user_id)
        return {"state": view.state, "reason": view.reason, "since": _dt(view.since).isoformat()}

    def offer_for(self, user_id: str) -> dict[str, Any] | None:
        """The offer frame outstanding for this agent, to show again after a reload."""
        found = next((o for o in self._offers.values() if o["agent_id"] == user_id), None)
        return {k: v for k, v in found.items() if k != "agent_id"} if found else None

    def position(self, conversation_id: str) -> tuple[int, int] | None:
        position = self._engine.position(conversation_id)
        if position is None:
            return None
        return position, int(self._engine.eta(conversation_id) or 0)

    def queue_stats(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for queue in self.queues.values():
            stats = self._engine.queue_stats(queue.id)
            longest = stats.longest_wait_since
            out.append(
                {
                    "id": queue.id,
                    "name": queue.name,
                    "org_unit_id": queue.org_unit_id,
                    "waiting": stats.waiting,
                    "offered": stats.offered,
                    "longest_wait_seconds": int(now - longest) if longest is not None else 0,
                    "overflowed": stats.overflowed_in,
                    "agents_logged_in": stats.agents_logged_in,
                    "agents_ready": stats.agents_ready,
                }
            )
        return out

    def agents(self, units: frozenset[str]) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for user_id, info in self.staff.items():
            if info.org_unit_id not in units:
                continue
            view = self._engine.agent_view(user_id)
            out.append(
                {
                    "id": user_id,
                    "username": info.username,
                    "display_name": info.display_name,
                    "org_unit_id": info.org_unit_id,
                    "state": view.state,
                    "reason": view.reason,
                    "since": _dt(view.since).isoformat(),
                    "seconds_in_state": int(now - view.since),
                    "conversations": list(view.contacts),
                    "offer": view.offer,
                }
            )
        return out

    # ------------------------------------------------------------- decisions
    async def _run(self, event: Event) -> list[Decision]:
        """Feed one event (caller holds the lock) and carry out what the engine decides."""
        decisions = self._engine.handle(event)
        await self._apply(decisions)
        return decisions

    async def _apply(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        after: list[Callable[[], Awaitable[Any]]] = []
        now = _dt(self._clock())
        async with self._sessions() as session:
            for d in decisions:
                await self._store(session, d, now, after)
            await session.commit()
        for action in after:
            try:
                await action()
            except Exception:
                log.exception("acd follow-up failed")

    async def _store(
        self,
        session: AsyncSession,
        d: Decision,
        now: dt.datetime,
        after: list[Callable[[], Awaitable[Any]]],
    ) -> None:
        """Persist one decision; queue what must be said to people once it is committed."""
        citizens, push = self._citizens, self.push
        phones = self.phones
        if isinstance(d, Offer):
            frame = await self._offer_frame(session, d)
            self._offers[d.contact_id] = {**frame, "agent_id": d.agent_id}
            if push is not None:
                after.append(lambda: push.to_agent(d.agent_id, frame))
            if phones is not None and frame["media"] == "realtime":
                after.append(lambda: phones.offered(d.contact_id, d.agent_id, d.expires_at))
        elif isinstance(d, OfferWithdrawn):
            was = self._offers.pop(d.contact_id, None) or {}
            frame = {"type": "offer_withdrawn", "conversation_id": d.contact_id, "reason": d.reason}
            if push is not None:
                after.append(lambda: push.to_agent(d.agent_id, frame))
            if phones is not None and was.get("media") == "realtime":
                after.append(lambda: phones.withdrawn(d.contact_id, d.agent_id))
        elif isinstance(d, Assigned):
            self._offers.pop(d.contact_id, None)
            contact = await session.get(AcdContact, d.contact_id)
            if contact is not None:
                contact.agent_id, contact.target_agent_id = d.agent_id, None
            conversation = await session.get(Conversation, d.contact_id)
            if conversation is not None:
                conversation.agent_id, conversation.assigned_at = d.agent_id, now
            status = await session.get(AgentStatusRow, d.agent_id)
            if status is not None:
                status.answered += 1
            info = self.staff.get(d.agent_id)
            name = (info.display_name or info.username) if info else ""
            after.append(lambda: citizens.set_state(d.contact_id, ConversationState.ASSIGNED))
            after.append(lambda: citizens.say_to(d.contact_id, "agent_joined", name=name))
            if push is not None:
                frame = {"type": "assigned", "conversation_id": d.contact_id}
                after.append(lambda: push.to_agent(d.agent_id, frame))
        elif isinstance(d, Requeued):
            contact = await session.get(AcdContact, d.contact_id)
            if contact is not None:
                contact.agent_id, contact.queue_id = None, d.queue_id
                view = self._engine.contact_view(d.contact_id)
                if view is not None:
                    contact.target_agent_id = view.target_agent_id
                    contact.visited = list(view.visited)
                    contact.entered_queue_at = _dt(view.entered_queue_at)
            conversation = await session.get(Conversation, d.contact_id)
            if conversation is not None:
                conversation.agent_id, conversation.queue_id = None, d.queue_id
            if d.agent_id is not None:
                old = d.agent_id
                after.append(lambda: citizens.set_state(d.contact_id, ConversationState.QUEUED))
                after.append(lambda: citizens.say_to(d.contact_id, "agent_left"))
                if push is not None:
                    frame = {
                        "type": "unassigned",
                        "conversation_id": d.contact_id,
                        "reason": "requeued",
                    }
                    after.append(lambda: push.to_agent(old, frame))
        elif isinstance(d, Overflowed):
            contact = await session.get(AcdContact, d.contact_id)
            if contact is not None:
                contact.queue_id, contact.entered_queue_at = d.to_queue, now
                contact.visited = [*contact.visited, d.to_queue]
                contact.overflowed = True
            conversation = await session.get(Conversation, d.contact_id)
            if conversation is not None:
                conversation.queue_id = d.to_queue
            log.info("overflowed", extra={"conversation_id": d.contact_id, "queue": d.to_queue})
        elif isinstance(d, Fallback):
            await self._leave(session, d.contact_id)
            log.info("fallback", extra={"conversation_id": d.contact_id, "reason": d.reason})
            after.append(lambda: citizens.set_state(d.contact_id, ConversationState.LEAVE_MESSAGE))
            after.append(lambda: citizens.say_to(d.contact_id, "leave_message"))
        elif isinstance(d, Refused):
            await self._leave(session, d.contact_id)
            conversation = await session.get(Conversation, d.contact_id)
            if conversation is not None:
                conversation.disposition, conversation.closed_at = "blacklisted", now
            record(session, "acd", "acd.refused", "conversation", d.contact_id, reason=d.reason)
            log.warning("refused", extra={"conversation_id": d.contact_id, "reason": d.reason})
            after.append(lambda: citizens.set_state(d.contact_id, ConversationState.CLOSED))
            after.append(lambda: citizens.say_to(d.contact_id, "blacklisted"))
        elif isinstance(d, Released):
            await self._leave(session, d.contact_id)
        elif isinstance(d, AgentStateChanged):
            if d.reason == "missed_offers" or d.state == "offline":
                status = await session.get(AgentStatusRow, d.agent_id)
                if status is not None and status.presence != d.state:
                    status.presence, status.reason, status.since = d.state, d.reason, now
            if push is not None:
                frame = {"type": "status", **self.status_json(d.agent_id)}
                after.append(lambda: push.to_agent(d.agent_id, frame))

    async def _leave(self, session: AsyncSession, conversation_id: str) -> None:
        self._inside.discard(conversation_id)
        self._positions.pop(conversation_id, None)
        self._offers.pop(conversation_id, None)
        await session.execute(
            delete(AcdContact).where(AcdContact.conversation_id == conversation_id)
        )

    async def _offer_frame(self, session: AsyncSession, offer: Offer) -> dict[str, Any]:
        conversation = await session.get(Conversation, offer.contact_id)
        last = (
            await session.execute(
                select(Message.text)
                .where(Message.conversation_id == offer.contact_id, Message.author == "citizen")
                .order_by(Message.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        view = self._engine.contact_view(offer.contact_id)
        media = view.media if view is not None else None
        caller = None
        if conversation is not None and media == "realtime":
            contact = await session.get(Contact, conversation.contact_id)
            caller = contact.external_id if contact is not None else None
        return {
            "type": "offer",
            "caller": caller,
            "conversation_id": offer.contact_id,
            "queue_id": offer.queue_id,
            "expires_at": _dt(offer.expires_at).isoformat(),
            "channel": conversation.channel if conversation else None,  # the console shows it
            "media": media,  # what the ACD routed by (a realtime offer rings a phone)
            "language": conversation.language if conversation else None,
            "intent": conversation.intent if conversation else None,
            "waiting_seconds": int(self._clock() - view.arrived_at) if view else 0,
            "preview": (last or "")[:200],
        }

    async def _publish_positions(self) -> None:
        """Tell waiting citizens their place when it changes; staff the queue figures."""
        for conversation_id in list(self._inside):
            place = self.position(conversation_id)
            if place is None or self._positions.get(conversation_id) == place:
                continue
            self._positions[conversation_id] = place
            try:
                await self._citizens.queue_position(conversation_id, *place)
            except Exception:
                log.exception("position update failed")
        stats = self.queue_stats()
        if stats != self._last_stats and self.push is not None:
            self._last_stats = stats
            await self.push.to_staff({"type": "queues", "queues": stats})


def as_item(message: Message) -> dict[str, Any]:
    """A transcript line as staff see it."""
    return {
        "id": message.id,
        "from": message.author,
        "text": message.text,
        "at": message.created_at.isoformat() if message.created_at else None,
    }
