"""A pure automatic-contact-distribution (ACD) engine: events in, decisions out.

Nothing here does I/O, reads a clock, draws random numbers or awaits: the caller passes
``now`` with every event and carries out the decisions ``handle`` returns
(``hotline.acd.service`` does). That keeps every routing rule testable as a plain function
of the event sequence and lets the service rebuild the engine after a crash.

Rules worth knowing beyond the names:

* A contact's kind is its media kind (``Media``), as its channel declares it; the engine
  never sees channel names. ``realtime`` (a call) goes only to an agent with a phone and
  no other realtime or chat contact, and is that agent's only live work while it lasts.
  ``chat`` counts against the agent's chat ``capacity``. ``deferred`` (work that waits:
  mail, text-message threads) counts only against the agent's ``deferred_capacity``: it
  does not keep the agent from a chat or a call, but an agent in a call is not offered
  any. An agent has at most one offer outstanding, of whatever kind.

* Service order in a queue: higher priority first, then earlier *original* arrival (kept
  through overflow, transfer and requeue). An offer never skips an earlier contact of the same
  queue that the agent could take, except contacts targeted at an agent or held for their
  sticky agent.
* An agent who rejected or missed a contact is not offered it again for ``retry_after``
  seconds (others first); after that only if nobody else can take it.
* Only ``Tick`` fires timers (offer timeout, overflow, max wait, wrap-up end, sticky window);
  schedules are re-evaluated at every event's ``now``. A timer that comes due while its
  contact is offered (overflow, max wait) is applied when the offer ends.
* Configuration calls return nothing: what they set in motion (routing, overflow, a changed
  reported state) comes out of the next ``handle`` call.

Cost model: waiting contacts live in sorted lists, timers in one heap, and every queue keeps
the set of its members that could take a contact right now. An event therefore costs O(log n)
in the number of waiting contacts plus O(members) of the queues it touches; ``Tick`` only
pops due timers.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

from sortedcontainers import SortedList

Strategy = Literal[
    "linear", "round_robin", "fewest_answered", "longest_idle", "agent_priority", "sticky"
]
Presence = Literal["offline", "ready", "busy", "break"]
AgentStateName = Literal["offline", "ready", "busy", "break", "wrap_up"]
# A contact's media kind, what its channel declares (``hotline.ports.MediaKind``).
Media = Literal["realtime", "chat", "deferred"]
ContactState = Literal["waiting", "offered", "assigned"]

STRATEGIES: frozenset[str] = frozenset(
    ("linear", "round_robin", "fewest_answered", "longest_idle", "agent_priority", "sticky")
)
PRESENCES: frozenset[str] = frozenset(("offline", "ready", "busy", "break"))
MEDIA: tuple[Media, ...] = ("realtime", "chat", "deferred")
DEFAULT_HANDLE_TIME = 120.0
DEFAULT_DEFERRED_CAPACITY = 10
HANDLE_TIME_WEIGHT = 0.2  # EWMA weight of the newest handle time


class AcdError(ValueError):
    """A programmer error: unknown agent or queue, duplicate contact, bad configuration."""


def utc_weekday_minute(now: float) -> tuple[int, int]:
    """(weekday 0=Mon..6=Sun, minute of day) of ``now`` in UTC."""
    days, minute = divmod(math.floor(now / 60), 1440)
    return (days + 3) % 7, minute  # 1970-01-01 was a Thursday


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """Active on ``weekdays`` from ``start_minute`` to ``end_minute`` (exclusive), local time.

    ``end_minute < start_minute`` wraps past midnight: the hours after midnight belong to the
    window of the day it started on (Mon 22:00-06:00 covers Tuesday 03:00).
    """

    weekdays: frozenset[int]
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not all(0 <= d <= 6 for d in self.weekdays):
            raise AcdError(f"weekdays must be 0..6, got {sorted(self.weekdays)}")
        if not (0 <= self.start_minute <= 1440 and 0 <= self.end_minute <= 1440):
            raise AcdError("start_minute and end_minute must be within 0..1440")

    def covers(self, weekday: int, minute: int) -> bool:
        start, end = self.start_minute, self.end_minute
        if start <= end:
            return weekday in self.weekdays and start <= minute < end
        if minute >= start:
            return weekday in self.weekdays
        return minute < end and (weekday - 1) % 7 in self.weekdays


@dataclass(frozen=True, slots=True)
class QueueConfig:
    id: str
    strategy: Strategy = "longest_idle"
    overflow_to: str | None = None
    overflow_after: float | None = None  # seconds in THIS queue before overflowing
    max_wait: float | None = None  # seconds since the ORIGINAL arrival before Fallback
    offer_timeout: float = 20.0
    wrap_up: float = 0.0  # seconds of wrap-up after an agent ends a contact of this queue
    sticky_window: float = 0.0  # "sticky": seconds from arrival to hold out for the last agent

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise AcdError(f"unknown strategy {self.strategy!r}")
        if self.overflow_to == self.id:
            raise AcdError(f"queue {self.id!r} cannot overflow into itself")
        if self.offer_timeout <= 0:
            raise AcdError("offer_timeout must be positive")


@dataclass(frozen=True, slots=True)
class Membership:
    agent_id: str
    queue_id: str
    penalty: int = 0
    schedule: tuple[ScheduleWindow, ...] = ()  # empty = always active


# --------------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class ContactArrived:
    contact_id: str
    queue_id: str
    now: float
    priority: int = 0
    media: Media = "chat"
    key: str | None = None  # checked against the blacklist
    last_agent_id: str | None = None
    target_agent_id: str | None = None  # only this agent may be offered the contact
    arrived_at: float | None = None  # defaults to now; transfers pass the original arrival


@dataclass(frozen=True, slots=True)
class AgentStatus:
    agent_id: str
    presence: Presence
    now: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    contact_id: str
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class OfferRejected:
    contact_id: str
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True)
class ContactEnded:
    contact_id: str
    now: float


@dataclass(frozen=True, slots=True)
class Transfer:
    contact_id: str
    now: float
    to_queue_id: str | None = None
    to_agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


Event: TypeAlias = (
    ContactArrived | AgentStatus | OfferAccepted | OfferRejected | ContactEnded | Transfer | Tick
)


# ------------------------------------------------------------------------------ decisions
@dataclass(frozen=True, slots=True)
class Offer:
    contact_id: str
    agent_id: str
    queue_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    contact_id: str
    agent_id: str
    reason: str  # rejected, timeout, agent_unavailable, abandoned, transferred, queue_removed


@dataclass(frozen=True, slots=True)
class Assigned:
    contact_id: str
    agent_id: str
    queue_id: str


@dataclass(frozen=True, slots=True)
class AcceptRefused:
    contact_id: str
    agent_id: str
    reason: str  # not_offered, taken, gone


@dataclass(frozen=True, slots=True)
class Requeued:
    contact_id: str
    agent_id: str | None  # the agent it was taken from, if it was assigned
    queue_id: str


@dataclass(frozen=True, slots=True)
class Overflowed:
    contact_id: str
    from_queue: str
    to_queue: str


@dataclass(frozen=True, slots=True)
class Fallback:
    contact_id: str
    reason: str  # unknown_queue, max_wait, queue_removed


@dataclass(frozen=True, slots=True)
class Refused:
    contact_id: str
    reason: str  # blacklisted


@dataclass(frozen=True, slots=True)
class Released:
    contact_id: str
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent_id: str
    state: AgentStateName
    reason: str | None


Decision: TypeAlias = (
    Offer
    | OfferWithdrawn
    | Assigned
    | AcceptRefused
    | Requeued
    | Overflowed
    | Fallback
    | Refused
    | Released
    | AgentStateChanged
)


# ---------------------------------------------------------------------------------- views
@dataclass(frozen=True, slots=True)
class QueueStats:
    waiting: int
    offered: int
    longest_wait_since: float | None  # earliest original arrival among waiting contacts
    overflowed_in: int
    agents_logged_in: int  # members with an active schedule who are not offline
    agents_ready: int  # of those, reported "ready"


@dataclass(frozen=True, slots=True)
class AgentView:
    state: AgentStateName
    reason: str | None
    since: float
    contacts: tuple[str, ...]
    offer: str | None
    answered: int
    missed: int
    presence: Presence = "offline"
    capacity: int = 0
    idle_since: float = 0.0
    wrap_until: float | None = None
    deferred_capacity: int = 0


@dataclass(frozen=True, slots=True)
class ContactView:
    queue_id: str
    state: ContactState
    agent_id: str | None  # the offered or assigned agent
    priority: int
    arrived_at: float
    entered_queue_at: float
    visited: tuple[str, ...]
    target_agent_id: str | None
    media: Media
    held_for: str | None = None  # sticky: waiting for this agent only
    last_agent_id: str | None = None
    declined: tuple[tuple[str, float], ...] = ()  # (agent, not offered again before)
    key: str | None = None


# ------------------------------------------------------------------------- internal state
_Key: TypeAlias = tuple[int, float, int, str]  # (-priority, arrived_at, seq, contact_id)

_OFFER, _CHECK, _STICKY, _WRAP, _RETRY = range(5)


class _Contact:
    __slots__ = (
        "agent",
        "alive",
        "arrived_at",
        "assigned_at",
        "declined",
        "entered_queue_at",
        "expires_at",
        "held_for",
        "id",
        "key",
        "last_agent_id",
        "media",
        "offer_epoch",
        "priority",
        "queue_id",
        "skey",
        "slot",
        "state",
        "sticky_agent",
        "sticky_released",
        "target_agent_id",
        "timer_epoch",
        "visited",
    )

    def __init__(
        self,
        contact_id: str,
        queue_id: str,
        priority: int,
        media: Media,
        arrived_at: float,
        seq: int,
    ) -> None:
        self.id = contact_id
        self.queue_id = queue_id
        self.priority = priority
        self.media: Media = media
        self.arrived_at = arrived_at
        self.entered_queue_at = arrived_at
        self.skey: _Key = (-priority, arrived_at, seq, contact_id)
        self.visited: list[str] = []
        self.key: str | None = None
        self.last_agent_id: str | None = None
        self.target_agent_id: str | None = None
        self.state: ContactState = "waiting"
        self.agent: _Agent | None = None  # offered to / assigned to
        self.alive = True
        self.slot: Any = None  # the SortedList holding skey while waiting
        self.held_for: _Agent | None = None
        self.sticky_agent: _Agent | None = None  # indexed in that agent's ``sticky``
        self.sticky_released = False
        self.declined: dict[str, float] = {}  # agent -> not offered again before this time
        self.timer_epoch = 0
        self.offer_epoch = 0
        self.expires_at = 0.0
        self.assigned_at: float | None = None


class _Agent:
    __slots__ = (
        "active",
        "answered",
        "can",
        "capacity",
        "contacts",
        "deferred_capacity",
        "held",
        "id",
        "idle_since",
        "mem_active",
        "memberships",
        "missed",
        "n_chat",
        "n_deferred",
        "n_realtime",
        "offer",
        "phone",
        "presence",
        "reason",
        "since",
        "state",
        "state_reason",
        "sticky",
        "targeted",
        "wrap_epoch",
        "wrap_until",
    )

    def __init__(self, agent_id: str, capacity: int, deferred_capacity: int) -> None:
        self.id = agent_id
        self.capacity = capacity  # chat contacts at once
        self.deferred_capacity = deferred_capacity  # deferred contacts at once
        self.presence: Presence = "offline"
        self.reason: str | None = None
        self.state: AgentStateName = "offline"
        self.state_reason: str | None = None
        self.since = 0.0
        self.idle_since = 0.0
        self.answered = 0
        self.missed = 0
        self.contacts: dict[str, _Contact] = {}  # assigned
        self.n_realtime = 0  # assigned contacts by media kind
        self.n_chat = 0
        self.n_deferred = 0
        self.phone = True  # has a phone: may be offered calls
        self.offer: _Contact | None = None
        self.wrap_until: float | None = None
        self.wrap_epoch = 0
        self.memberships: dict[str, Membership] = {}  # in set_memberships order
        self.mem_active: dict[str, bool] = {}  # by schedule
        self.active: dict[str, _Queue] = {}  # existing queues with an active membership
        self.can: dict[str, bool] = dict.fromkeys(MEDIA, False)  # may be offered, by media
        self.targeted: dict[str, Any] = {}  # media -> SortedList of keys
        self.held: dict[str, Any] = {}  # media -> SortedList of keys (sticky holds)
        self.sticky: dict[str, _Contact] = {}  # waiting sticky contacts naming this agent


class _Queue:
    __slots__ = (
        "active",
        "all",
        "avail",
        "capacity",
        "cfg",
        "deferred",
        "deferred_capacity",
        "deferred_handle_time",
        "general",
        "handle_time",
        "id",
        "members",
        "offered",
        "order",
        "overflowed_in",
        "prio_counts",
        "ready",
        "rr_last",
        "staffed",
    )

    def __init__(self, cfg: QueueConfig, order: dict[str, int]) -> None:
        self.id = cfg.id
        self.cfg = cfg
        self.general: dict[str, Any] = {m: SortedList() for m in MEDIA}
        self.all: Any = SortedList()  # every waiting contact, for positions
        self.deferred: Any = SortedList()  # the deferred ones among them
        self.prio_counts: dict[int, int] = {}
        self.offered: dict[str, _Contact] = {}
        self.overflowed_in = 0
        self.members: dict[str, Membership] = {}
        self.order = order  # agent -> linear position (first added first)
        self.active: dict[str, _Agent] = {}
        self.avail: dict[str, dict[str, _Agent]] = {m: {} for m in MEDIA}  # may be offered
        self.staffed = 0  # active members not offline
        self.ready = 0  # active members reported ready
        self.capacity = 0  # chat capacity of the staffed members
        self.deferred_capacity = 0  # deferred capacity of the staffed members
        self.rr_last: str | None = None
        self.handle_time = DEFAULT_HANDLE_TIME  # live work (realtime and chat)
        self.deferred_handle_time = DEFAULT_HANDLE_TIME


class _Schedule:
    __slots__ = ("active", "members", "windows")

    def __init__(self, windows: tuple[ScheduleWindow, ...]) -> None:
        self.windows = windows
        self.active: bool | None = None  # None: not evaluated yet
        self.members: dict[tuple[str, str], None] = {}


_Timer: TypeAlias = tuple[float, int, int, Any, Any]


class AcdEngine:
    """Decides which agent gets which contact. See the module docstring for the contract."""

    def __init__(
        self,
        local_time: Callable[[float], tuple[int, int]] = utc_weekday_minute,
        max_missed_offers: int = 3,
        *,
        retry_after: float = 10.0,
    ) -> None:
        """``retry_after``: an agent who rejected or missed a contact is not offered it again
        for this many seconds, so someone else gets the chance first."""
        self._local_time = local_time
        self._max_missed = max_missed_offers
        self._retry_after = retry_after
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._blacklist: frozenset[str] = frozenset()
        self._order: dict[str, dict[str, int]] = {}
        self._schedules: dict[tuple[ScheduleWindow, ...], _Schedule] = {}
        self._unevaluated: dict[tuple[ScheduleWindow, ...], _Schedule] = {}
        self._local: tuple[int, int] | None = None
        self._timers: list[_Timer] = []
        self._seq = 0
        self._now = 0.0
        self._pending: list[Decision] = []  # from configuration calls, out with the next event
        self._check: dict[str, _Contact] = {}  # newly waiting: max wait / overflow due?
        self._unstaffed: dict[str, None] = {}  # queues that may have lost their last member
        self._dirty_queues: dict[str, _Queue] = {}  # new contacts in the general lists
        self._dirty_agents: dict[str, _Agent] = {}  # agents that may take something now
        self._handlers: dict[type, Callable[[Any, list[Decision]], None]] = {
            ContactArrived: self._arrived,
            AgentStatus: self._agent_status,
            OfferAccepted: self._accepted,
            OfferRejected: self._rejected,
            ContactEnded: self._ended,
            Transfer: self._transfer,
            Tick: self._tick,
        }

    # ============================================================== configuration
    def set_queue(self, cfg: QueueConfig) -> None:
        """Create or update a queue (idempotent)."""
        q = self._queues.get(cfg.id)
        if q is None:
            q = _Queue(cfg, self._order.setdefault(cfg.id, {}))
            self._queues[cfg.id] = q
            for a in self._agents.values():
                m = a.memberships.get(cfg.id)
                if m is not None:
                    q.members[a.id] = m
                    if a.mem_active.get(cfg.id):
                        self._join(q, a)
            return
        if q.cfg == cfg:
            return
        old, q.cfg = q.cfg, cfg
        timing = ("overflow_to", "overflow_after", "max_wait", "strategy", "sticky_window")
        if any(getattr(old, f) != getattr(cfg, f) for f in timing):
            for key in list(q.all):
                c = self._contacts[key[3]]
                self._unplace(c)
                self._push_contact_timers(c, q)
                self._place(c, q)
                self._check[c.id] = c
            for c in q.offered.values():
                self._push_contact_timers(c, q)
        self._unstaffed[q.id] = None

    def remove_queue(self, queue_id: str) -> list[Decision]:
        """Remove a queue; its waiting and offered contacts go to Fallback("queue_removed").

        Contacts already assigned stay with their agents.
        """
        out = self._take_pending()
        q = self._queues.get(queue_id)
        if q is None:
            return out
        for c in sorted([*q.offered.values(), *self._waiting(q)], key=lambda c: c.skey):
            if c.state == "offered":
                a = self._detach_offer(c)
                out.append(OfferWithdrawn(c.id, a.id, "queue_removed"))
                self._sync(a, out)
            else:
                self._unplace(c)
            self._forget(c)
            out.append(Fallback(c.id, "queue_removed"))
        for a in list(q.active.values()):
            self._part(q, a)
        del self._queues[queue_id]
        self._unstaffed.pop(queue_id, None)
        self._dirty_queues.pop(queue_id, None)
        self._settle(out)
        return out

    def set_agent(
        self,
        agent_id: str,
        capacity: int = 3,
        *,
        phone: bool = True,
        deferred_capacity: int = DEFAULT_DEFERRED_CAPACITY,
    ) -> None:
        """Create an agent (offline) or update its chat capacity, whether it has a phone
        (may be offered realtime contacts) and its deferred capacity."""
        if capacity < 0:
            raise AcdError("capacity must be >= 0")
        if deferred_capacity < 0:
            raise AcdError("deferred_capacity must be >= 0")
        a = self._agents.get(agent_id)
        if a is None:
            a = self._agents[agent_id] = _Agent(agent_id, capacity, deferred_capacity)
            a.phone = phone
            return
        if (a.phone, a.capacity, a.deferred_capacity) == (phone, capacity, deferred_capacity):
            return
        if a.state != "offline":
            for q in a.active.values():
                q.capacity += capacity - a.capacity
                q.deferred_capacity += deferred_capacity - a.deferred_capacity
        a.phone, a.capacity, a.deferred_capacity = phone, capacity, deferred_capacity
        self._sync(a, self._pending)

    def set_memberships(self, agent_id: str, memberships: Sequence[Membership]) -> None:
        """Replace all of the agent's queue memberships (list order: the agent's own order)."""
        a = self._agent(agent_id)
        new: dict[str, Membership] = {}
        for m in memberships:
            if m.agent_id != agent_id:
                raise AcdError(f"membership of {m.agent_id!r} passed for {agent_id!r}")
            if m.queue_id in new:
                raise AcdError(f"{agent_id!r} is a member of {m.queue_id!r} twice")
            new[m.queue_id] = m
        for qid, m in list(a.memberships.items()):
            kept = new.get(qid)
            if kept is None or kept.schedule != m.schedule:
                self._drop_membership(a, m)
        for qid, m in new.items():
            order = self._order.setdefault(qid, {})
            if a.id not in order:
                order[a.id] = len(order)
            q = self._queues.get(qid)
            if q is not None:
                q.members[a.id] = m
            if qid in a.mem_active:  # same schedule: only the penalty may differ
                continue
            a.mem_active[qid] = False
            active = True
            if m.schedule:
                s = self._schedules.get(m.schedule)
                if s is None:
                    s = self._schedules[m.schedule] = _Schedule(m.schedule)
                    if self._local is None:
                        self._unevaluated[m.schedule] = s
                    else:
                        s.active = self._covers(m.schedule, self._local)
                s.members[(a.id, qid)] = None
                active = bool(s.active)
            a.memberships[qid] = m
            self._set_mem_active(a, qid, active)
        a.memberships = new
        self._replace_sticky(a)

    def set_member_order(self, queue_id: str, agent_ids: Sequence[str]) -> None:
        """Extra: put these agents first in the queue's linear order, in this order."""
        old = self._order.setdefault(queue_id, {})
        ordered = list(dict.fromkeys([*agent_ids, *sorted(old, key=old.__getitem__)]))
        old.clear()
        old.update({aid: i for i, aid in enumerate(ordered)})

    def set_blacklist(self, keys: Iterable[str]) -> None:
        self._blacklist = frozenset(keys)

    # ================================================================ restoration
    def restore_agent(
        self,
        agent_id: str,
        capacity: int,
        presence: Presence,
        reason: str | None,
        since: float,
        answered: int = 0,
        deferred_capacity: int | None = None,
    ) -> None:
        """Rebuild an agent after a crash; emits nothing.

        Whether it has a phone, and its deferred capacity unless given, stay as
        ``set_agent`` left them.
        """
        if presence not in PRESENCES:
            raise AcdError(f"unknown presence {presence!r}")
        a = self._agents.get(agent_id)
        if deferred_capacity is None:
            deferred_capacity = a.deferred_capacity if a is not None else DEFAULT_DEFERRED_CAPACITY
        self.set_agent(
            agent_id,
            capacity,
            phone=a.phone if a is not None else True,
            deferred_capacity=deferred_capacity,
        )
        a = self._agents[agent_id]
        was_offline = a.presence == "offline"
        a.presence, a.reason, a.answered = presence, reason, answered
        a.idle_since = since
        self._sync(a, [])
        a.since = since
        if was_offline != (presence == "offline"):
            self._replace_sticky(a)

    def restore_contact(
        self,
        contact_id: str,
        queue_id: str,
        priority: int,
        media: Media,
        arrived_at: float,
        entered_queue_at: float,
        visited: Sequence[str],
        agent_id: str | None = None,
        key: str | None = None,
        last_agent_id: str | None = None,
        target_agent_id: str | None = None,
    ) -> None:
        """Rebuild a contact after a crash: assigned if ``agent_id`` is set, else waiting.

        Emits nothing; the next ``handle`` (the service sends a Tick) routes. A waiting
        contact of a queue that no longer exists leaves with Fallback("unknown_queue") then,
        and one assigned to an agent the engine does not know is Requeued.
        """
        if contact_id in self._contacts:
            raise AcdError(f"duplicate contact {contact_id!r}")
        if media not in MEDIA:
            raise AcdError(f"unknown media kind {media!r}")
        c = self._new_contact(contact_id, queue_id, priority, media, arrived_at)
        c.visited = list(dict.fromkeys([*visited, queue_id]))
        c.key, c.last_agent_id = key, last_agent_id
        c.target_agent_id = target_agent_id if target_agent_id in self._agents else None
        c.entered_queue_at = entered_queue_at
        a = self._agents.get(agent_id) if agent_id is not None else None
        if a is not None:
            c.state, c.agent = "assigned", a
            self._contacts[c.id] = c
            self._attach(a, c)
            since = a.since
            self._sync(a, [])
            a.since = since  # derived busy: still the restored presence's time
            return
        q = self._queues.get(queue_id)
        if q is None:
            self._pending.append(Fallback(contact_id, "unknown_queue"))
            return
        if agent_id is not None:
            self._pending.append(Requeued(contact_id, agent_id, queue_id))
        self._contacts[c.id] = c
        self._push_contact_timers(c, q)
        self._place(c, q)
        self._check[c.id] = c

    # ===================================================================== events
    def handle(self, event: Event) -> list[Decision]:
        """Apply one event; return what the service must carry out, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise AcdError(f"unknown event {event!r}")
        self._now = event.now
        if self._schedules:
            self._refresh_schedules(event.now)
        out: list[Decision] = []
        handler(event, out)  # validates before it changes anything
        self._settle(out)
        if self._pending:
            out = self._take_pending() + out
        return out

    def _arrived(self, ev: ContactArrived, out: list[Decision]) -> None:
        if ev.contact_id in self._contacts:
            raise AcdError(f"duplicate contact {ev.contact_id!r}")
        if ev.media not in MEDIA:
            raise AcdError(f"unknown media kind {ev.media!r}")
        if ev.target_agent_id is not None and ev.target_agent_id not in self._agents:
            raise AcdError(f"unknown agent {ev.target_agent_id!r}")
        if ev.key is not None and ev.key in self._blacklist:
            out.append(Refused(ev.contact_id, "blacklisted"))
            return
        q = self._queues.get(ev.queue_id)
        if q is None:
            out.append(Fallback(ev.contact_id, "unknown_queue"))
            return
        arrived = ev.now if ev.arrived_at is None else ev.arrived_at
        c = self._new_contact(ev.contact_id, q.id, ev.priority, ev.media, arrived)
        c.key, c.last_agent_id, c.target_agent_id = ev.key, ev.last_agent_id, ev.target_agent_id
        self._contacts[c.id] = c
        self._enter(c, q)

    def _agent_status(self, ev: AgentStatus, out: list[Decision]) -> None:
        a = self._agent(ev.agent_id)
        if ev.presence not in PRESENCES:
            raise AcdError(f"unknown presence {ev.presence!r}")
        if ev.presence == a.presence and ev.reason == a.reason:
            return
        was = a.presence
        if ev.presence != "ready" and a.offer is not None:
            c = a.offer
            self._detach_offer(c)
            out.append(OfferWithdrawn(c.id, a.id, "agent_unavailable"))
            self._back_to_waiting(c)
        if ev.presence == "offline":
            for c in sorted(a.contacts.values(), key=lambda c: c.skey):
                self._detach(a, c)
                c.declined = {}
                self._requeue(c, c.queue_id, None, a.id, out)
            a.wrap_until = None
            a.wrap_epoch += 1
        if ev.presence == "ready" and was != "ready":
            a.idle_since = ev.now
            a.missed = 0
        a.presence, a.reason = ev.presence, ev.reason
        self._sync(a, out)
        if (was == "offline") != (ev.presence == "offline"):
            self._replace_sticky(a)

    def _accepted(self, ev: OfferAccepted, out: list[Decision]) -> None:
        c = self._contacts.get(ev.contact_id)
        if c is None:
            out.append(AcceptRefused(ev.contact_id, ev.agent_id, "gone"))
            return
        if c.state == "assigned":
            assert c.agent is not None
            if c.agent.id != ev.agent_id:  # the holder accepting twice is a no-op
                out.append(AcceptRefused(c.id, ev.agent_id, "taken"))
            return
        if c.state != "offered" or c.agent is None or c.agent.id != ev.agent_id:
            out.append(AcceptRefused(c.id, ev.agent_id, "not_offered"))
            return
        a = self._detach_offer(c)
        c.state, c.agent, c.assigned_at = "assigned", a, ev.now
        c.target_agent_id = None
        c.declined = {}
        self._attach(a, c)
        a.missed = 0
        a.answered += 1
        out.append(Assigned(c.id, a.id, c.queue_id))
        self._sync(a, out)

    def _rejected(self, ev: OfferRejected, out: list[Decision]) -> None:
        c = self._contacts.get(ev.contact_id)
        if c is None or c.state != "offered" or c.agent is None or c.agent.id != ev.agent_id:
            return
        a = self._detach_offer(c)
        out.append(OfferWithdrawn(c.id, a.id, "rejected"))
        self._decline(c, a)
        self._sync(a, out)
        self._back_to_waiting(c)

    def _ended(self, ev: ContactEnded, out: list[Decision]) -> None:
        c = self._contacts.get(ev.contact_id)
        if c is None:
            return
        if c.state == "waiting":
            self._unplace(c)
            self._forget(c)
            out.append(Released(c.id, None))
            return
        if c.state == "offered":
            offered_to = self._detach_offer(c)
            out.append(OfferWithdrawn(c.id, offered_to.id, "abandoned"))
            self._forget(c)
            out.append(Released(c.id, None))
            self._sync(offered_to, out)
            return
        a = c.agent
        assert a is not None
        self._detach(a, c)
        self._forget(c)
        out.append(Released(c.id, a.id))
        q = self._queues.get(c.queue_id)
        if q is not None and c.assigned_at is not None:
            took = ev.now - c.assigned_at
            if c.media == "deferred":
                q.deferred_handle_time += HANDLE_TIME_WEIGHT * (took - q.deferred_handle_time)
            else:
                q.handle_time += HANDLE_TIME_WEIGHT * (took - q.handle_time)
        wrap = q.cfg.wrap_up if q is not None else 0.0
        if wrap > 0 and a.presence != "offline":
            a.wrap_until = max(a.wrap_until or 0.0, ev.now + wrap)
            a.wrap_epoch += 1
            self._push(a.wrap_until, _WRAP, a, a.wrap_epoch)
        elif not (a.n_realtime or a.n_chat) and a.wrap_until is None:
            a.idle_since = ev.now
        self._sync(a, out)

    def _transfer(self, ev: Transfer, out: list[Decision]) -> None:
        c = self._contacts.get(ev.contact_id)
        if ev.to_queue_id is not None and ev.to_queue_id not in self._queues:
            raise AcdError(f"unknown queue {ev.to_queue_id!r}")
        if ev.to_agent_id is not None and ev.to_agent_id not in self._agents:
            raise AcdError(f"unknown agent {ev.to_agent_id!r}")
        if c is None:
            return
        a = c.agent
        old_agent: str | None = None
        if c.state == "assigned":
            assert a is not None
            self._detach(a, c)
            old_agent = a.id
            if not (a.n_realtime or a.n_chat) and a.wrap_until is None:
                a.idle_since = ev.now
        elif c.state == "offered":
            a = self._detach_offer(c)
            out.append(OfferWithdrawn(c.id, a.id, "transferred"))
        else:
            self._unplace(c)
        # Whoever let it go is the last choice for it (not offered it right back).
        c.declined = {a.id: ev.now} if a is not None else {}
        self._requeue(c, ev.to_queue_id or c.queue_id, ev.to_agent_id, old_agent, out)
        if a is not None:
            self._sync(a, out)

    def _tick(self, ev: Tick, out: list[Decision]) -> None:
        now, heap = ev.now, self._timers
        while heap and heap[0][0] <= now:
            when, _, kind, obj, token = heapq.heappop(heap)
            if kind == _OFFER:
                c = obj
                if c.alive and c.state == "offered" and c.offer_epoch == token:
                    a = self._detach_offer(c)
                    out.append(OfferWithdrawn(c.id, a.id, "timeout"))
                    self._decline(c, a)
                    a.missed += 1
                    if a.missed >= self._max_missed and a.presence == "ready":
                        a.presence, a.reason = "break", "missed_offers"
                    self._sync(a, out)
                    self._back_to_waiting(c)
            elif kind == _CHECK:
                if obj.alive and obj.timer_epoch == token:
                    self._check_contact(obj, out)
            elif kind == _STICKY:
                c = obj
                if c.alive and c.timer_epoch == token and c.sticky_agent is not None:
                    self._replace(c)
            elif kind == _WRAP:
                a = obj
                if a.wrap_epoch == token and a.wrap_until is not None:
                    a.wrap_until = None
                    if not (a.n_realtime or a.n_chat):
                        a.idle_since = when
                    self._sync(a, out)
            else:  # _RETRY: an agent may be offered a contact it declined again
                c = obj
                if c.alive and c.state == "waiting":
                    a = self._agents[token]
                    if a.can[c.media]:
                        self._dirty_agents[a.id] = a

    # ==================================================================== queries
    def position(self, contact_id: str) -> int | None:
        """1-based place among the waiting contacts of its queue, in service order.

        Deferred work and live work (realtime, chat) are counted apart: they are taken
        against different capacities, so neither waits behind the other.
        """
        c = self._contacts.get(contact_id)
        if c is None or c.state != "waiting":
            return None
        q = self._queues[c.queue_id]
        deferred_before = int(q.deferred.bisect_left(c.skey))
        if c.media == "deferred":
            return deferred_before + 1
        return int(q.all.bisect_left(c.skey)) - deferred_before + 1

    def eta(self, contact_id: str) -> float | None:
        """Estimated seconds to wait: rounds of the staffed capacity times handle time
        (for deferred work its own capacity and handle time)."""
        place = self.position(contact_id)
        if place is None:
            return None
        c = self._contacts[contact_id]
        q = self._queues[c.queue_id]
        if c.media == "deferred":
            return math.ceil(place / max(1, q.deferred_capacity)) * q.deferred_handle_time
        return math.ceil(place / max(1, q.capacity)) * q.handle_time

    def handle_time(self, queue_id: str, media: Media = "chat") -> float:
        """Extra: the queue's average handle time (EWMA of assigned-to-ended seconds) of
        live work (realtime and chat), or of deferred work."""
        q = self._queue(queue_id)
        return q.deferred_handle_time if media == "deferred" else q.handle_time

    def queue_stats(self, queue_id: str) -> QueueStats:
        q = self._queue(queue_id)
        longest: float | None = None
        for prio, count in q.prio_counts.items():
            if count:
                first = q.all[q.all.bisect_left((-prio,))][1]
                longest = first if longest is None else min(longest, first)
        return QueueStats(
            waiting=len(q.all),
            offered=len(q.offered),
            longest_wait_since=longest,
            overflowed_in=q.overflowed_in,
            agents_logged_in=q.staffed,
            agents_ready=q.ready,
        )

    def agent_view(self, agent_id: str) -> AgentView:
        a = self._agent(agent_id)
        return AgentView(
            state=a.state,
            reason=a.state_reason,
            since=a.since,
            contacts=tuple(a.contacts),
            offer=a.offer.id if a.offer is not None else None,
            answered=a.answered,
            missed=a.missed,
            presence=a.presence,
            capacity=a.capacity,
            idle_since=a.idle_since,
            wrap_until=a.wrap_until,
            deferred_capacity=a.deferred_capacity,
        )

    def contact_view(self, contact_id: str) -> ContactView | None:
        c = self._contacts.get(contact_id)
        if c is None:
            return None
        return ContactView(
            queue_id=c.queue_id,
            state=c.state,
            agent_id=c.agent.id if c.agent is not None else None,
            priority=c.priority,
            arrived_at=c.arrived_at,
            entered_queue_at=c.entered_queue_at,
            visited=tuple(c.visited),
            target_agent_id=c.target_agent_id,
            media=c.media,
            held_for=c.held_for.id if c.held_for is not None else None,
            last_agent_id=c.last_agent_id,
            declined=tuple(c.declined.items()),
            key=c.key,
        )

    def waiting(self, queue_id: str) -> list[str]:
        """Extra: the queue's waiting contacts in service order (O(n); for tests/tools)."""
        return [key[3] for key in self._queue(queue_id).all]

    def snapshot(self) -> dict[str, Any]:
        """The full state as JSON-able data (debugging and tests)."""
        return {
            "now": self._now,
            "local_time": list(self._local) if self._local is not None else None,
            "blacklist": sorted(self._blacklist),
            "timers": len(self._timers),
            "queues": {
                q.id: {
                    "config": asdict(q.cfg),
                    "waiting": [key[3] for key in q.all],
                    "offered": sorted(q.offered),
                    "overflowed_in": q.overflowed_in,
                    "members": sorted(q.members, key=lambda aid: q.order.get(aid, 0)),
                    "active": sorted(q.active),
                    "available": sorted(q.avail["chat"]),
                    "available_realtime": sorted(q.avail["realtime"]),
                    "available_deferred": sorted(q.avail["deferred"]),
                    "agents_logged_in": q.staffed,
                    "agents_ready": q.ready,
                    "round_robin_last": q.rr_last,
                    "handle_time": q.handle_time,
                }
                for q in self._queues.values()
            },
            "agents": {
                a.id: {
                    "state": a.state,
                    "reason": a.state_reason,
                    "since": a.since,
                    "presence": a.presence,
                    "presence_reason": a.reason,
                    "capacity": a.capacity,
                    "deferred_capacity": a.deferred_capacity,
                    "contacts": list(a.contacts),
                    "offer": a.offer.id if a.offer is not None else None,
                    "answered": a.answered,
                    "missed": a.missed,
                    "idle_since": a.idle_since,
                    "wrap_until": a.wrap_until,
                    "memberships": [
                        {
                            "queue_id": m.queue_id,
                            "penalty": m.penalty,
                            "active": a.mem_active.get(m.queue_id, False),
                            "schedule": [
                                {
                                    "weekdays": sorted(w.weekdays),
                                    "start_minute": w.start_minute,
                                    "end_minute": w.end_minute,
                                }
                                for w in m.schedule
                            ],
                        }
                        for m in a.memberships.values()
                    ],
                }
                for a in self._agents.values()
            },
            "contacts": {
                c.id: {
                    "queue_id": c.queue_id,
                    "state": c.state,
                    "agent_id": c.agent.id if c.agent is not None else None,
                    "priority": c.priority,
                    "media": c.media,
                    "arrived_at": c.arrived_at,
                    "entered_queue_at": c.entered_queue_at,
                    "visited": list(c.visited),
                    "key": c.key,
                    "last_agent_id": c.last_agent_id,
                    "target_agent_id": c.target_agent_id,
                    "held_for": c.held_for.id if c.held_for is not None else None,
                    "declined": dict(c.declined),
                    "expires_at": c.expires_at if c.state == "offered" else None,
                }
                for c in self._contacts.values()
            },
        }

    # ================================================================== internals
    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise AcdError(f"unknown agent {agent_id!r}")
        return a

    def _queue(self, queue_id: str) -> _Queue:
        q = self._queues.get(queue_id)
        if q is None:
            raise AcdError(f"unknown queue {queue_id!r}")
        return q

    def _take_pending(self) -> list[Decision]:
        out, self._pending = self._pending, []
        return out

    def _push(self, when: float, kind: int, obj: Any, token: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, kind, obj, token))

    def _new_contact(
        self, contact_id: str, queue_id: str, priority: int, media: Media, arrived: float
    ) -> _Contact:
        self._seq += 1
        return _Contact(contact_id, queue_id, priority, media, arrived, self._seq)

    def _waiting(self, q: _Queue) -> list[_Contact]:
        return [self._contacts[key[3]] for key in q.all]

    def _forget(self, c: _Contact) -> None:
        c.alive = False
        c.agent = None
        del self._contacts[c.id]

    @staticmethod
    def _covers(schedule: tuple[ScheduleWindow, ...], local: tuple[int, int]) -> bool:
        return any(w.covers(*local) for w in schedule)

    def _refresh_schedules(self, now: float) -> None:
        """Re-evaluate schedules when the local minute changed (few distinct schedules)."""
        local = self._local_time(now)
        if local != self._local:
            self._local = local
            todo: Iterable[_Schedule] = list(self._schedules.values())
        elif self._unevaluated:
            todo = list(self._unevaluated.values())
        else:
            return
        self._unevaluated.clear()
        for s in todo:
            active = self._covers(s.windows, local)
            if active != s.active:
                s.active = active
                for aid, qid in list(s.members):
                    self._set_mem_active(self._agents[aid], qid, active)

    def _drop_membership(self, a: _Agent, m: Membership) -> None:
        self._set_mem_active(a, m.queue_id, False)
        del a.mem_active[m.queue_id]
        del a.memberships[m.queue_id]
        q = self._queues.get(m.queue_id)
        if q is not None:
            q.members.pop(a.id, None)
        if m.schedule:
            s = self._schedules[m.schedule]
            del s.members[(a.id, m.queue_id)]
            if not s.members:
                del self._schedules[m.schedule]
                self._unevaluated.pop(m.schedule, None)

    def _set_mem_active(self, a: _Agent, qid: str, active: bool) -> None:
        if a.mem_active.get(qid) == active:
            return
        a.mem_active[qid] = active
        q = self._queues.get(qid)
        if q is not None:
            if active:
                self._join(q, a)
            else:
                self._part(q, a)
            self._replace_sticky(a)

    def _join(self, q: _Queue, a: _Agent) -> None:
        """``a`` becomes an active member of ``q``: counters and availability."""
        a.active[q.id] = q
        q.active[a.id] = a
        if a.state != "offline":
            q.staffed += 1
            q.capacity += a.capacity
            q.deferred_capacity += a.deferred_capacity
        if a.state == "ready":
            q.ready += 1
        for media, can in a.can.items():
            if can:
                q.avail[media][a.id] = a
                self._dirty_agents[a.id] = a

    def _part(self, q: _Queue, a: _Agent) -> None:
        del a.active[q.id]
        del q.active[a.id]
        if a.state != "offline":
            q.staffed -= 1
            q.capacity -= a.capacity
            q.deferred_capacity -= a.deferred_capacity
            if not q.staffed:
                self._unstaffed[q.id] = None
        if a.state == "ready":
            q.ready -= 1
        for pool in q.avail.values():
            pool.pop(a.id, None)

    def _sync(self, a: _Agent, out: list[Decision]) -> None:
        """Recompute the reported state (emit on change) and where ``a`` is available."""
        if a.presence != "ready":
            state: AgentStateName = a.presence
            reason = a.reason
        elif a.wrap_until is not None:
            state, reason = "wrap_up", None
        elif a.n_realtime or a.n_chat >= a.capacity:  # deferred work does not make busy
            state, reason = "busy", "capacity"
        else:
            state, reason = "ready", None
        if state != a.state or reason != a.state_reason:
            old = a.state
            a.state, a.state_reason, a.since = state, reason, self._now
            logged = (state != "offline") - (old != "offline")
            ready = (state == "ready") - (old == "ready")
            if logged or ready:
                for q in a.active.values():
                    q.staffed += logged
                    q.capacity += logged * a.capacity
                    q.deferred_capacity += logged * a.deferred_capacity
                    q.ready += ready
                    if logged < 0 and not q.staffed:
                        self._unstaffed[q.id] = None
            out.append(AgentStateChanged(a.id, state, reason))
        # In a call: nothing else. Deferred work never keeps the agent from live work.
        if a.presence == "ready" and a.wrap_until is None and a.offer is None and not a.n_realtime:
            realtime = a.phone and not a.n_chat and a.capacity > 0
            chat = a.n_chat < a.capacity
            deferred = a.n_deferred < a.deferred_capacity
        else:
            realtime = chat = deferred = False
        can = a.can
        if can["chat"] != chat:
            self._set_can(a, "chat", chat)
        if can["realtime"] != realtime:
            self._set_can(a, "realtime", realtime)
        if can["deferred"] != deferred:
            self._set_can(a, "deferred", deferred)

    def _set_can(self, a: _Agent, media: str, can: bool) -> None:
        """Whether ``a`` may be offered ``media`` now: the pools of its active queues."""
        a.can[media] = can
        for q in a.active.values():
            if can:
                q.avail[media][a.id] = a
            else:
                del q.avail[media][a.id]
        if can:
            self._dirty_agents[a.id] = a

    def _attach(self, a: _Agent, c: _Contact) -> None:
        a.contacts[c.id] = c
        if c.media == "chat":
            a.n_chat += 1
        elif c.media == "realtime":
            a.n_realtime += 1
        else:
            a.n_deferred += 1

    def _detach(self, a: _Agent, c: _Contact) -> None:
        del a.contacts[c.id]
        if c.media == "chat":
            a.n_chat -= 1
        elif c.media == "realtime":
            a.n_realtime -= 1
        else:
            a.n_deferred -= 1
        c.agent = None

    def _detach_offer(self, c: _Contact) -> _Agent:
        a = c.agent
        assert a is not None
        q = self._queues.get(c.queue_id)
        if q is not None:
            q.offered.pop(c.id, None)
        a.offer = None
        c.agent = None
        return a

    def _decline(self, c: _Contact, a: _Agent) -> None:
        """``a`` rejected or missed ``c``: others first for a while, no target/sticky hold."""
        until = self._now + self._retry_after
        c.declined[a.id] = until
        self._push(until, _RETRY, c, a.id)
        if c.target_agent_id == a.id:
            c.target_agent_id = None
        if c.last_agent_id == a.id:
            c.sticky_released = True

    def _back_to_waiting(self, c: _Contact) -> None:
        """A withdrawn offer: the contact waits again in the same queue (timers kept)."""
        q = self._queues[c.queue_id]
        self._place(c, q)
        self._check[c.id] = c

    def _requeue(
        self,
        c: _Contact,
        qid: str,
        target: str | None,
        old_agent: str | None,
        out: list[Decision],
    ) -> None:
        q = self._queues.get(qid)
        if q is None:
            self._forget(c)
            out.append(Fallback(c.id, "queue_removed"))
            return
        out.append(Requeued(c.id, old_agent, qid))
        c.target_agent_id = target
        self._enter(c, q)

    def _enter(self, c: _Contact, q: _Queue) -> None:
        """``c`` (re-)enters ``q`` now: fresh per-queue timers, then it waits."""
        c.queue_id = q.id
        c.entered_queue_at = self._now
        if q.id not in c.visited:
            c.visited.append(q.id)
        self._push_contact_timers(c, q)
        self._place(c, q)
        self._check[c.id] = c

    def _push_contact_timers(self, c: _Contact, q: _Queue) -> None:
        c.timer_epoch += 1
        cfg = q.cfg
        if cfg.max_wait is not None:
            self._push(c.arrived_at + cfg.max_wait, _CHECK, c, c.timer_epoch)
        if cfg.overflow_to is not None and cfg.overflow_after is not None:
            self._push(c.entered_queue_at + cfg.overflow_after, _CHECK, c, c.timer_epoch)
        if cfg.strategy == "sticky" and c.last_agent_id is not None and cfg.sticky_window > 0:
            self._push(c.arrived_at + cfg.sticky_window, _STICKY, c, c.timer_epoch)

    def _place(self, c: _Contact, q: _Queue) -> None:
        """Put a waiting contact where routing looks for it: its target's list, its sticky
        agent's hold list, or the queue's general list for its media kind."""
        c.state = "waiting"
        key = c.skey
        q.all.add(key)
        if c.media == "deferred":
            q.deferred.add(key)
        q.prio_counts[c.priority] = q.prio_counts.get(c.priority, 0) + 1
        if c.target_agent_id is not None:
            t = self._agents[c.target_agent_id]
            lst = t.targeted.get(c.media)
            if lst is None:
                lst = t.targeted[c.media] = SortedList()
            lst.add(key)
            c.slot = lst
            if t.can[c.media]:
                self._dirty_agents[t.id] = t
            return
        cfg = q.cfg
        if (
            cfg.strategy == "sticky"
            and c.last_agent_id is not None
            and not c.sticky_released
            and self._now < c.arrived_at + cfg.sticky_window
        ):
            la = self._agents.get(c.last_agent_id)
            if la is not None:
                la.sticky[c.id] = c
                c.sticky_agent = la
                if la.presence != "offline" and q.id in la.active:
                    lst = la.held.get(c.media)
                    if lst is None:
                        lst = la.held[c.media] = SortedList()
                    lst.add(key)
                    c.slot = lst
                    c.held_for = la
                    if la.can[c.media]:
                        self._dirty_agents[la.id] = la
                    return
        lst = q.general[c.media]
        lst.add(key)
        c.slot = lst
        self._dirty_queues[q.id] = q

    def _unplace(self, c: _Contact) -> None:
        q = self._queues[c.queue_id]
        c.slot.remove(c.skey)
        c.slot = None
        q.all.remove(c.skey)
        if c.media == "deferred":
            q.deferred.remove(c.skey)
        q.prio_counts[c.priority] -= 1
        if c.sticky_agent is not None:
            del c.sticky_agent.sticky[c.id]
            c.sticky_agent = None
        c.held_for = None

    def _replace(self, c: _Contact) -> None:
        if c.state == "waiting":
            self._unplace(c)
            self._place(c, self._queues[c.queue_id])

    def _replace_sticky(self, a: _Agent) -> None:
        """``a``'s presence or memberships changed: re-decide which contacts wait for it."""
        for c in list(a.sticky.values()):
            self._replace(c)

    def _check_contact(self, c: _Contact, out: list[Decision]) -> None:
        """Max wait, then overflow (timed, or because nobody staffs the queue)."""
        if not c.alive or c.state != "waiting":
            return
        now = self._now
        q = self._queues[c.queue_id]
        cfg = q.cfg
        if cfg.max_wait is not None and now >= c.arrived_at + cfg.max_wait:
            self._unplace(c)
            self._forget(c)
            out.append(Fallback(c.id, "max_wait"))
            return
        if cfg.overflow_to is None or c.target_agent_id is not None:
            return
        if q.staffed and (
            cfg.overflow_after is None or now < c.entered_queue_at + cfg.overflow_after
        ):
            return
        to = self._queues.get(cfg.overflow_to)
        if to is None or to.id in c.visited:
            return
        self._unplace(c)
        out.append(Overflowed(c.id, q.id, to.id))
        to.overflowed_in += 1
        self._enter(c, to)

    def _settle(self, out: list[Decision]) -> None:
        """Run what the event set in motion: due checks and overflows, then routing."""
        while True:
            if self._check:
                batch, self._check = self._check, {}
                for c in batch.values():
                    self._check_contact(c, out)
            elif self._unstaffed:
                queues, self._unstaffed = self._unstaffed, {}
                for qid in queues:
                    q = self._queues.get(qid)
                    if q is not None and not q.staffed and q.cfg.overflow_to is not None:
                        for c in self._waiting(q):
                            self._check_contact(c, out)
            elif self._dirty_queues:
                dirty, self._dirty_queues = self._dirty_queues, {}
                for q in dirty.values():
                    if self._queues.get(q.id) is q:
                        self._route_queue(q, out)
            elif self._dirty_agents:
                agents, self._dirty_agents = self._dirty_agents, {}
                for a in agents.values():
                    self._route_agent(a, out)
            else:
                return

    def _blocked(self, c: _Contact, a: _Agent) -> bool:
        until = c.declined.get(a.id)
        return until is not None and self._now < until

    def _pick(self, q: _Queue, c: _Contact) -> _Agent | None:
        """The queue strategy's choice among the agents that may be offered ``c`` now."""
        pool = q.avail[c.media]
        if not pool:
            return None
        cands: list[_Agent]
        if c.declined:
            now, fresh, again = self._now, [], []
            for aid, a in pool.items():
                until = c.declined.get(aid)
                if until is None:
                    fresh.append(a)
                elif now >= until:
                    again.append(a)
            cands = fresh or again  # who declined it only when nobody else can
            if not cands:
                return None
        else:
            cands = list(pool.values())
        if len(cands) == 1:
            return cands[0]
        strategy, order = q.cfg.strategy, q.order
        if strategy == "longest_idle" or strategy == "sticky":
            if strategy == "sticky" and c.last_agent_id is not None:
                la = pool.get(c.last_agent_id)
                if la is not None and la in cands:
                    return la
            return min(cands, key=lambda a: (a.idle_since, order[a.id]))
        if strategy == "linear":
            return min(cands, key=lambda a: order[a.id])
        if strategy == "round_robin":
            n = len(order)
            last = order.get(q.rr_last, -1) if q.rr_last is not None else -1
            return min(cands, key=lambda a: (order[a.id] - last - 1) % n)
        if strategy == "fewest_answered":
            return min(cands, key=lambda a: (a.answered, a.idle_since, order[a.id]))
        members = q.members  # agent_priority
        return min(cands, key=lambda a: (members[a.id].penalty, a.idle_since, order[a.id]))

    def _offer(self, c: _Contact, a: _Agent, out: list[Decision]) -> None:
        q = self._queues[c.queue_id]
        self._unplace(c)
        c.state, c.agent = "offered", a
        c.offer_epoch += 1
        c.expires_at = self._now + q.cfg.offer_timeout
        q.offered[c.id] = c
        if a.id in q.order:
            q.rr_last = a.id
        a.offer = c
        self._push(c.expires_at, _OFFER, c, c.offer_epoch)
        out.append(Offer(c.id, a.id, q.id, c.expires_at))
        self._sync(a, out)

    def _first_offerable(
        self, q: _Queue, media: str, limit: _Key | None
    ) -> tuple[_Contact, _Agent] | None:
        """The first contact of ``q``'s general ``media`` list that someone may take now
        (before ``limit``), with the agent the strategy picks for it."""
        for key in q.general[media]:
            if limit is not None and key > limit:
                return None
            c = self._contacts[key[3]]
            a = self._pick(q, c)
            if a is not None:
                return c, a
            if not c.declined:
                return None  # nobody available for this media kind: the rest wait too
        return None

    def _route_queue(self, q: _Queue, out: list[Decision]) -> None:
        """Offer the queue's contacts in service order while someone can take them.

        Each media kind waits in its own list (different agents can take them); the earliest
        of the offerable heads goes first, so FIFO holds across media kinds too.
        """
        avail, general = q.avail, q.general
        while avail["chat"] or avail["realtime"] or avail["deferred"]:
            best: tuple[_Contact, _Agent] | None = None
            for media in MEDIA:
                if general[media] and avail[media]:
                    found = self._first_offerable(q, media, best[0].skey if best else None)
                    if found is not None:
                        best = found
            if best is None:
                return
            self._offer(best[0], best[1], out)

    def _route_agent(self, a: _Agent, out: list[Decision]) -> None:
        """``a`` can take more: its best contact across its queues (targeted and held first,
        then lowest penalty, then service order). The queue strategy still picks the agent,
        in case several became available at once."""
        while True:
            kinds = [m for m, can in a.can.items() if can]
            if not kinds:
                return
            best_rank: tuple[int, int, _Key] | None = None
            best: _Contact | None = None
            for lists in (a.targeted, a.held):
                for media in kinds:
                    lst = lists.get(media)
                    if lst:
                        rank = (0, 0, lst[0])
                        if best_rank is None or rank < best_rank:
                            best_rank, best = rank, self._contacts[lst[0][3]]
            if best is not None:
                self._offer(best, a, out)
                return
            for qid, q in a.active.items():
                penalty = a.memberships[qid].penalty
                for media in kinds:
                    for key in q.general[media]:
                        rank = (1, penalty, key)
                        if best_rank is not None and rank >= best_rank:
                            break
                        c = self._contacts[key[3]]
                        if not c.declined or not self._blocked(c, a):
                            best_rank, best = rank, c
                            break
            if best is None:
                return
            q = self._queues[best.queue_id]
            chosen = self._pick(q, best)
            assert chosen is not None
            self._offer(best, chosen, out)
            if chosen is a:
                return
