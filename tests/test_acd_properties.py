"""Random event sequences against the ACD engine, checking invariants after every step.

The machine mirrors the engine's state *only from the decisions it returns* (as the service
does) and checks that mirror against the engine's views: nothing is lost, nothing is assigned
twice, no agent holds more chats than its chat capacity or more deferred work than its
deferred capacity, a realtime contact (a call) is never held alongside a chat or another
call and no offer comes during one, reported agent states match, waiting lists keep
service order, and no offer skips an earlier contact the same agent could have taken.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace

# Hypothesis caches constants it finds in our source under .hypothesis/ even without an
# example database; keep that out of the repository.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "hotline-hypothesis")
)

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hotline.acd.engine import (
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
    Strategy,
    Tick,
    Transfer,
)

STRATEGIES: list[Strategy] = [
    "linear",
    "round_robin",
    "fewest_answered",
    "longest_idle",
    "agent_priority",
    "sticky",
]
DAY = 240.0  # a fake day of four minutes, so schedules switch often
QUEUES = ["q1", "q2", "q3", "q4"]
OVERFLOW = {"q1": ("q2", 30.0), "q2": ("q3", 20.0), "q3": ("q1", 25.0)}  # q3 -> q1: a cycle
TIMEOUT = {"q1": 10.0, "q2": 8.0, "q3": 12.0, "q4": 10.0}
CAPACITY = {"a1": 1, "a2": 2, "a3": 3, "a4": 3, "a5": 2}  # chats at once
DEFERRED_CAPACITY = {"a1": 2, "a2": 1, "a3": 3, "a4": 0, "a5": 2}
PHONE = {"a1": True, "a2": True, "a3": True, "a4": True, "a5": False}
AGENTS = sorted(CAPACITY)
MEDIA: list[Media] = ["chat", "chat", "realtime", "deferred"]
DAYTIME = (ScheduleWindow(frozenset(range(5)), 0, 720),)  # weekdays, first half of the day
NIGHT = (ScheduleWindow(frozenset(range(7)), 1200, 240),)  # wraps past midnight
MEMBERS: dict[str, list[tuple[str, int, tuple[ScheduleWindow, ...]]]] = {
    "a1": [("q1", 0, ()), ("q2", 0, ())],
    "a2": [("q1", 0, ()), ("q3", 1, NIGHT)],
    "a3": [("q2", 1, ()), ("q3", 0, ()), ("q4", 0, ())],
    "a4": [("q4", 0, DAYTIME)],
    "a5": [("q1", 2, DAYTIME), ("q4", 1, ())],
}
PRESENCE = ["ready", "ready", "ready", "busy", "break", "offline"]


def fake_local_time(now: float) -> tuple[int, int]:
    return int(now // DAY) % 7, int((now % DAY) * 1440 / DAY)


def key(priority: int, arrived_at: float) -> tuple[int, float]:
    return -priority, arrived_at


@dataclass
class Mirror:
    """What the service would know about a contact, from decisions alone."""

    queue: str
    priority: int
    media: str
    arrived_at: float
    state: str = "waiting"
    agent: str | None = None
    visited: list[str] = field(default_factory=list)


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = AcdEngine(local_time=fake_local_time)
        self.now = 0.0
        self.serial = 0
        self.contacts: dict[str, Mirror] = {}
        self.left: set[str] = set()
        self.states: dict[str, tuple[str, str | None]] = {a: ("offline", None) for a in AGENTS}
        self.overflowed_into: dict[str, list[str]] = {q: [] for q in QUEUES}
        self.configs: dict[str, QueueConfig] = {}

    @initialize(
        strategies=st.lists(st.sampled_from(STRATEGIES), min_size=4, max_size=4),
        retry_after=st.sampled_from([0.0, 10.0]),
        max_missed=st.integers(1, 3),
        ready=st.sets(st.sampled_from(AGENTS), min_size=2),
    )
    def configure(
        self, strategies: list[Strategy], retry_after: float, max_missed: int, ready: set[str]
    ) -> None:
        self.engine = AcdEngine(
            local_time=fake_local_time, max_missed_offers=max_missed, retry_after=retry_after
        )
        for qid, strategy in zip(QUEUES, strategies, strict=True):
            to, after = OVERFLOW.get(qid, (None, None))
            self.configs[qid] = QueueConfig(
                qid,
                strategy=strategy,
                overflow_to=to,
                overflow_after=after,
                max_wait={"q1": 150.0, "q4": 200.0}.get(qid),
                offer_timeout=TIMEOUT[qid],
                wrap_up=5.0 if qid == "q4" else 0.0,
                sticky_window=20.0,
            )
            self.engine.set_queue(self.configs[qid])
        for agent_id in AGENTS:
            self.engine.set_agent(
                agent_id,
                CAPACITY[agent_id],
                phone=PHONE[agent_id],
                deferred_capacity=DEFERRED_CAPACITY[agent_id],
            )
            self.engine.set_memberships(
                agent_id,
                [
                    Membership(agent_id, q, penalty, sched)
                    for q, penalty, sched in MEMBERS[agent_id]
                ],
            )
        self.engine.set_blacklist(["bad"])
        for agent_id in sorted(ready):
            self.run(AgentStatus(agent_id, "ready", 0.0))

    # ------------------------------------------------------------------------- driving
    def pick(self, selector: int, state: str | None = None) -> str | None:
        ids = sorted(c for c, m in self.contacts.items() if state is None or m.state == state)
        return ids[selector % len(ids)] if ids else None

    def run(self, event: Event) -> list[Decision]:
        self.now = event.now
        decisions = self.engine.handle(event)
        if isinstance(event, ContactArrived) and not any(isinstance(d, Refused) for d in decisions):
            self.contacts[event.contact_id] = Mirror(
                event.queue_id,
                event.priority,
                event.media,
                event.now,
                visited=[event.queue_id],
            )
        for d in decisions:
            self.apply(d)
        self.check_fifo(decisions)
        return decisions

    def advance(self, dt: int) -> float:
        return self.now + dt

    @rule(
        dt=st.integers(0, 10),
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        media=st.sampled_from(MEDIA),
        last=st.sampled_from([None, None, *AGENTS]),
        to_agent=st.sampled_from([None] * 8 + AGENTS),
        bad=st.integers(0, 19),
    )
    def arrive(
        self,
        dt: int,
        queue: str,
        priority: int,
        media: Media,
        last: str | None,
        to_agent: str | None,
        bad: int,
    ) -> None:
        self.serial += 1
        self.run(
            ContactArrived(
                f"c{self.serial}",
                queue,
                self.advance(dt),
                priority=priority,
                media=media,
                key="bad" if bad == 0 else f"k{self.serial}",
                last_agent_id=last,
                target_agent_id=to_agent,
            )
        )

    @rule(dt=st.integers(0, 10), agent=st.sampled_from(AGENTS), presence=st.sampled_from(PRESENCE))
    def status(self, dt: int, agent: str, presence: str) -> None:
        reason = "r" if presence == "break" else None
        self.run(AgentStatus(agent, presence, self.advance(dt), reason))  # type: ignore[arg-type]

    @rule(dt=st.integers(0, 5), selector=st.integers(0, 1000))
    def accept(self, dt: int, selector: int) -> None:
        cid = self.pick(selector, "offered")
        if cid is not None:
            agent = self.contacts[cid].agent
            assert agent is not None
            decisions = self.run(OfferAccepted(cid, agent, self.advance(dt)))
            assert decisions[0] == Assigned(cid, agent, self.contacts[cid].queue)

    @rule(dt=st.integers(0, 5), selector=st.integers(0, 1000), agents=st.permutations(AGENTS))
    def race(self, dt: int, selector: int, agents: list[str]) -> None:
        """Two agents accept the same contact: exactly one wins, the other learns why."""
        cid = self.pick(selector)
        if cid is None:
            return
        now = self.advance(dt)
        mirror = self.contacts[cid]
        holder = mirror.agent
        other = next(a for a in agents if a != holder)

        def answer(agent: str) -> list[Decision]:
            """The accept's own answer (the event may also route other contacts)."""
            return [
                d
                for d in self.run(OfferAccepted(cid, agent, now))
                if isinstance(d, Assigned | AcceptRefused) and d.contact_id == cid
            ]

        if mirror.state == "offered":
            assert holder is not None
            assert answer(holder) == [Assigned(cid, holder, mirror.queue)]
            assert answer(other) == [AcceptRefused(cid, other, "taken")]
        elif mirror.state == "assigned":
            assert holder is not None
            assert answer(other) == [AcceptRefused(cid, other, "taken")]
            assert answer(holder) == []
        else:
            for agent in agents[:2]:
                assert answer(agent) == [AcceptRefused(cid, agent, "not_offered")]

    @rule(dt=st.integers(0, 5), selector=st.integers(0, 1000))
    def reject(self, dt: int, selector: int) -> None:
        cid = self.pick(selector, "offered")
        if cid is not None:
            agent = self.contacts[cid].agent
            assert agent is not None
            decisions = self.run(OfferRejected(cid, agent, self.advance(dt)))
            assert decisions[0] == OfferWithdrawn(cid, agent, "rejected")

    @rule(dt=st.integers(0, 10), selector=st.integers(0, 1000), stale=st.booleans())
    def end(self, dt: int, selector: int, stale: bool) -> None:
        if stale and self.left:
            cid: str | None = sorted(self.left)[selector % len(self.left)]
            decisions = self.run(ContactEnded(cid, self.advance(dt)))  # type: ignore[arg-type]
            assert not [d for d in decisions if getattr(d, "contact_id", None) == cid]
            return
        cid = self.pick(selector, "assigned" if selector % 3 else None)
        if cid is not None:
            self.run(ContactEnded(cid, self.advance(dt)))
            assert cid not in self.contacts

    @rule(
        dt=st.integers(0, 10),
        selector=st.integers(0, 1000),
        queue=st.sampled_from([None, *QUEUES]),
        agent=st.sampled_from([None, None, None, *AGENTS]),
    )
    def transfer(self, dt: int, selector: int, queue: str | None, agent: str | None) -> None:
        cid = self.pick(selector)
        if cid is not None:
            self.run(Transfer(cid, self.advance(dt), to_queue_id=queue, to_agent_id=agent))

    @rule(dt=st.integers(1, 20))
    def tick(self, dt: int) -> None:
        self.run(Tick(self.advance(dt)))

    @rule(
        agent=st.sampled_from(AGENTS),
        queues=st.lists(st.sampled_from(QUEUES), unique=True, max_size=3),
    )
    def change_memberships(self, agent: str, queues: list[str]) -> None:
        """Configuration takes effect with the next event (a tick, here)."""
        memberships = [Membership(agent, q, penalty) for penalty, q in enumerate(queues)]
        self.engine.set_memberships(agent, memberships)
        self.run(Tick(self.now))

    @rule(queue=st.sampled_from(QUEUES), strategy=st.sampled_from(STRATEGIES))
    def change_strategy(self, queue: str, strategy: Strategy) -> None:
        self.configs[queue] = replace(self.configs[queue], strategy=strategy)
        self.engine.set_queue(self.configs[queue])
        self.run(Tick(self.now))

    @rule(queue=st.sampled_from(QUEUES))
    def remove_and_restore_queue(self, queue: str) -> None:
        for d in self.engine.remove_queue(queue):
            self.apply(d)
        assert not any(m.queue == queue and m.state != "assigned" for m in self.contacts.values())
        self.engine.set_queue(self.configs[queue])
        self.run(Tick(self.now))

    # ------------------------------------------------------------------- the mirror
    def apply(self, d: Decision) -> None:
        if isinstance(d, Offer):
            m = self.contacts[d.contact_id]
            assert (m.state, m.queue) == ("waiting", d.queue_id), d
            assert d.expires_at == self.now + TIMEOUT[d.queue_id]
            m.state, m.agent = "offered", d.agent_id
        elif isinstance(d, OfferWithdrawn):
            m = self.contacts[d.contact_id]
            assert (m.state, m.agent) == ("offered", d.agent_id), d
            m.state, m.agent = "waiting", None
        elif isinstance(d, Assigned):
            m = self.contacts[d.contact_id]
            assert (m.state, m.agent, m.queue) == ("offered", d.agent_id, d.queue_id), d
            m.state = "assigned"
        elif isinstance(d, AcceptRefused):
            m_or_none = self.contacts.get(d.contact_id)
            if m_or_none is None:
                assert d.reason == "gone"
            elif m_or_none.state == "assigned":
                assert d.reason == "taken" and m_or_none.agent != d.agent_id
            else:
                assert d.reason == "not_offered"
        elif isinstance(d, Requeued):
            m = self.contacts[d.contact_id]
            if d.agent_id is not None:
                assert (m.state, m.agent) == ("assigned", d.agent_id), d
            else:
                assert m.state == "waiting", d
            m.state, m.agent, m.queue = "waiting", None, d.queue_id
            if d.queue_id not in m.visited:
                m.visited.append(d.queue_id)
        elif isinstance(d, Overflowed):
            m = self.contacts[d.contact_id]
            assert (m.state, m.queue) == ("waiting", d.from_queue), d
            assert d.to_queue not in m.visited, "overflowed into a visited queue"
            m.queue = d.to_queue
            m.visited.append(d.to_queue)
            self.overflowed_into[d.to_queue].append(d.contact_id)
        elif isinstance(d, Fallback):
            m = self.contacts.pop(d.contact_id)
            assert m.state == "waiting", d
            self.left.add(d.contact_id)
        elif isinstance(d, Refused):
            assert d.contact_id not in self.contacts
            self.left.add(d.contact_id)
        elif isinstance(d, Released):
            m = self.contacts.pop(d.contact_id)
            assert m.agent == d.agent_id, d
            self.left.add(d.contact_id)
        else:
            assert isinstance(d, AgentStateChanged)
            assert self.states[d.agent_id] != (d.state, d.reason), f"no change: {d}"
            self.states[d.agent_id] = (d.state, d.reason)

    def check_fifo(self, decisions: list[Decision]) -> None:
        """No offer skips an earlier general contact of the same queue the agent could take."""
        for d in decisions:
            if not isinstance(d, Offer):
                continue
            offered = self.engine.contact_view(d.contact_id)
            if offered is None or offered.target_agent_id == d.agent_id:
                continue
            if offered.last_agent_id == d.agent_id:
                continue  # sticky: may have been held for this agent
            held = [self.contacts[c].media for c in self.engine.agent_view(d.agent_id).contacts]
            for cid in self.engine.waiting(d.queue_id):
                view = self.engine.contact_view(cid)
                assert view is not None
                if key(view.priority, view.arrived_at) >= key(offered.priority, offered.arrived_at):
                    break
                if view.target_agent_id is not None or view.held_for is not None:
                    continue
                if any(a == d.agent_id and until > self.now for a, until in view.declined):
                    continue  # the agent declined it a moment ago
                if self.could_take(d.agent_id, held, view.media):
                    raise AssertionError(f"{d} skipped {cid} ({view})")

    @staticmethod
    def could_take(agent_id: str, held: list[str], media: str) -> bool:
        """Whether a free agent holding ``held`` (media kinds) may be offered ``media``."""
        if "realtime" in held:
            return False
        if media == "chat":
            return held.count("chat") < CAPACITY[agent_id]
        if media == "realtime":
            return PHONE[agent_id] and "chat" not in held and CAPACITY[agent_id] > 0
        return held.count("deferred") < DEFERRED_CAPACITY[agent_id]

    # ------------------------------------------------------------------- invariants
    @invariant()
    def mirror_matches_engine(self) -> None:
        for cid, m in self.contacts.items():
            view = self.engine.contact_view(cid)
            assert view is not None, f"{cid} lost"
            assert (view.state, view.agent_id, view.queue_id) == (m.state, m.agent, m.queue), cid
            assert list(view.visited) == m.visited
            assert view.arrived_at == m.arrived_at and view.priority == m.priority
        for cid in self.left:
            assert self.engine.contact_view(cid) is None

    @invariant()
    def agents_hold_what_they_should(self) -> None:
        seen: set[str] = set()
        for agent_id in AGENTS:
            view = self.engine.agent_view(agent_id)
            assert (view.state, view.reason) == self.states[agent_id]
            held = [*view.contacts, *([view.offer] if view.offer else [])]
            assert not seen & set(held), "a contact with two agents"
            seen |= set(held)
            for cid in view.contacts:
                assert (self.contacts[cid].state, self.contacts[cid].agent) == (
                    "assigned",
                    agent_id,
                )
            if view.offer is not None:
                assert (self.contacts[view.offer].state, self.contacts[view.offer].agent) == (
                    "offered",
                    agent_id,
                )
            kinds = [self.contacts[c].media for c in held]
            assert kinds.count("chat") <= CAPACITY[agent_id], "over the chat capacity"
            assert kinds.count("deferred") <= DEFERRED_CAPACITY[agent_id], "over deferred"
            if "realtime" in kinds:
                assert PHONE[agent_id], "a call without a phone"
                assert kinds.count("realtime") == 1, "two calls at once"
                assert "chat" not in kinds, "a call alongside a chat"
            if any(self.contacts[c].media == "realtime" for c in view.contacts):
                assert view.offer is None, "offered something during a call"
            if view.presence == "offline":
                assert not held
        busy = {c for c, m in self.contacts.items() if m.state != "waiting"}
        assert busy == seen

    @invariant()
    def waiting_lists_keep_service_order(self) -> None:
        total = 0
        for qid in QUEUES:
            waiting = self.engine.waiting(qid)
            total += len(waiting)
            keys = [key(self.contacts[c].priority, self.contacts[c].arrived_at) for c in waiting]
            assert keys == sorted(keys)
            places = {"live": 0, "deferred": 0}  # counted apart
            for cid in waiting:
                lane = "deferred" if self.contacts[cid].media == "deferred" else "live"
                places[lane] += 1
                assert self.engine.position(cid) == places[lane]
                assert self.contacts[cid].queue == qid
            overflowed = [c for c in waiting if c in set(self.overflowed_into[qid])]
            assert overflowed == sorted(
                overflowed,
                key=lambda c: key(self.contacts[c].priority, self.contacts[c].arrived_at),
            )
            stats = self.engine.queue_stats(qid)
            assert stats.waiting == len(waiting)
        assert total == sum(1 for m in self.contacts.values() if m.state == "waiting")


AcdMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAcdMachine = AcdMachine.TestCase
