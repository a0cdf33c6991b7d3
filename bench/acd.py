"""ACD engine decision latency under load (target: p99 <= 1 ms per handle() call).

Builds a large floor: 1,000 agents (each in 2-4 of 50 queues, with penalties, capacity 3,
a fifth on shift schedules), queues with mixed strategies, overflow links and max wait. Most
agents start on break, so 10,000 contacts pile up. Then a discrete-event simulation drives
the engine the way the service would: arrivals (3/s), presence changes (2/s, mostly going
ready), agents answering offers (80% accept within 0.5-6 s, 8% reject, 12% let it time out),
contacts ending after ~90 s, 3% transferred, citizens abandoning (~15 min), and one Tick per
simulated second. Every ``handle()`` call of that phase is timed; the driver's own
bookkeeping is not.

    .venv/bin/python bench/acd.py [--agents 1000] [--queues 50] [--contacts 10000]
                                  [--events 20000] [--json]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import platform
import random
import resource
import statistics
import time
from typing import Generic, TypeVar

from hotline.acd.engine import (
    AcdEngine,
    AgentStatus,
    Assigned,
    ContactArrived,
    ContactEnded,
    Decision,
    Event,
    Fallback,
    Membership,
    Offer,
    OfferAccepted,
    OfferRejected,
    OfferWithdrawn,
    QueueConfig,
    Refused,
    Released,
    Requeued,
    ScheduleWindow,
    Strategy,
    Tick,
    Transfer,
)

T = TypeVar("T")
STRATEGIES: list[Strategy] = [
    "longest_idle",
    "longest_idle",
    "agent_priority",
    "round_robin",
    "fewest_answered",
    "linear",
    "sticky",
]
START = 1_700_000_000.0  # a Tuesday, 22:13 UTC
SCHEDULES = [
    (),
    (ScheduleWindow(frozenset(range(7)), 0, 1440),),
    (ScheduleWindow(frozenset({0, 1, 2, 3, 4}), 8 * 60, 23 * 60),),
    (ScheduleWindow(frozenset({1, 2}), 22 * 60, 6 * 60),),  # a night shift
]


class Bag(Generic[T]):
    """A set with O(1) random choice, for the driver (not measured)."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.index: dict[T, int] = {}

    def add(self, item: T) -> None:
        if item not in self.index:
            self.index[item] = len(self.items)
            self.items.append(item)

    def discard(self, item: T) -> None:
        i = self.index.pop(item, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def choice(self, rng: random.Random) -> T | None:
        return self.items[rng.randrange(len(self.items))] if self.items else None

    def __len__(self) -> int:
        return len(self.items)


class Floor:
    """The driver's picture of the floor, kept from the decisions (as the service does)."""

    def __init__(self, engine: AcdEngine) -> None:
        self.engine = engine
        self.waiting: Bag[str] = Bag()
        self.offered: dict[str, str] = {}
        self.assigned: dict[str, str] = {}
        self.samples: list[int] = []
        self.by_event: dict[str, list[int]] = {}
        self.decisions = 0

    def run(self, event: Event, measure: bool = True) -> list[Decision]:
        t0 = time.perf_counter_ns()
        decisions = self.engine.handle(event)
        elapsed = time.perf_counter_ns() - t0
        if measure:
            self.samples.append(elapsed)
            self.by_event.setdefault(type(event).__name__, []).append(elapsed)
            self.decisions += len(decisions)
        if isinstance(event, ContactArrived) and not any(
            isinstance(d, Refused | Fallback) and d.contact_id == event.contact_id
            for d in decisions
        ):
            self.waiting.add(event.contact_id)
        for d in decisions:
            if isinstance(d, Offer):
                self.waiting.discard(d.contact_id)
                self.offered[d.contact_id] = d.agent_id
            elif isinstance(d, OfferWithdrawn):
                del self.offered[d.contact_id]
                self.waiting.add(d.contact_id)
            elif isinstance(d, Assigned):
                del self.offered[d.contact_id]
                self.assigned[d.contact_id] = d.agent_id
            elif isinstance(d, Requeued):
                self.assigned.pop(d.contact_id, None)
                self.waiting.add(d.contact_id)
            elif isinstance(d, Fallback | Released):
                self.waiting.discard(d.contact_id)
                self.assigned.pop(d.contact_id, None)
        return decisions


def p99(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def build(args: argparse.Namespace, rng: random.Random) -> tuple[AcdEngine, list[str], list[str]]:
    engine = AcdEngine()
    queues = [f"q{i:02d}" for i in range(args.queues)]
    for i, qid in enumerate(queues):
        strategy = STRATEGIES[i % len(STRATEGIES)]
        overflow = i % 5 == 0 and i + 1 < len(queues)
        engine.set_queue(
            QueueConfig(
                qid,
                strategy=strategy,
                overflow_to=queues[i + 1] if overflow else None,
                overflow_after=rng.choice([60.0, 120.0, 300.0]) if overflow else None,
                max_wait=rng.choice([900.0, 1800.0, 3600.0]),
                offer_timeout=20.0,
                wrap_up=rng.choice([0.0, 0.0, 10.0]),
                sticky_window=30.0 if strategy == "sticky" else 0.0,
            )
        )
    agents = [f"agent{i:04d}" for i in range(args.agents)]
    for agent_id in agents:
        engine.set_agent(agent_id, capacity=3)
        memberships = [
            Membership(
                agent_id,
                qid,
                penalty=rng.randrange(3),
                schedule=SCHEDULES[0] if rng.random() < 0.8 else rng.choice(SCHEDULES),
            )
            for qid in rng.sample(queues, rng.randint(2, 4))
        ]
        engine.set_memberships(agent_id, memberships)
    return engine, queues, agents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    started = time.perf_counter()
    engine, queues, agents = build(args, rng)
    floor = Floor(engine)
    now = START
    # Most of the floor is on break (logged in, so nothing overflows for want of staff).
    for agent_id in agents:
        presence = "ready" if rng.random() < 0.03 else "break"
        floor.run(AgentStatus(agent_id, presence, now, "lunch"), measure=False)  # type: ignore[arg-type]
    serial = 0

    def arrival(at: float) -> ContactArrived:
        nonlocal serial
        serial += 1
        return ContactArrived(
            f"c{serial}",
            rng.choice(queues),
            at,
            priority=rng.choices([0, 1, 2], [90, 7, 3])[0],
            media="realtime" if rng.random() < 0.1 else "chat",
            key=f"citizen{rng.randrange(50_000)}",
            last_agent_id=rng.choice(agents) if rng.random() < 0.2 else None,
        )

    # What people will do, as a discrete-event simulation: (when, seq, action, subject).
    plan: list[tuple[float, int, str, tuple[str, ...]]] = []

    order = itertools.count()

    def later(when: float, action: str, *subject: str) -> None:
        heapq.heappush(plan, (when, next(order), action, subject))

    def react(decisions: list[Decision], at: float) -> None:
        """Agents answer most offers within seconds, citizens give up now and then."""
        for d in decisions:
            if isinstance(d, Offer):
                roll = rng.random()
                if roll < 0.80:
                    later(at + rng.uniform(0.5, 6.0), "accept", d.contact_id, d.agent_id)
                elif roll < 0.88:
                    later(at + rng.uniform(0.5, 4.0), "reject", d.contact_id, d.agent_id)
                # else: nobody answers, the offer times out
            elif isinstance(d, Assigned):
                if rng.random() < 0.03:
                    later(at + rng.uniform(10.0, 60.0), "transfer", d.contact_id, d.agent_id)
                else:
                    later(at + rng.expovariate(1 / 90.0), "end", d.contact_id, d.agent_id)

    piling: list[int] = []  # arrivals while the backlog builds up
    for _ in range(args.contacts):
        now += 0.01
        contact = arrival(now)
        later(now + rng.expovariate(1 / 900.0), "abandon", contact.contact_id)
        t0 = time.perf_counter_ns()
        decisions = floor.run(contact, measure=False)
        piling.append(time.perf_counter_ns() - t0)
        react(decisions, now)
    build_s = time.perf_counter() - started
    waiting_before = len(floor.waiting)

    later(now + 1.0, "tick")
    later(now + rng.expovariate(3.0), "arrive")
    later(now + rng.expovariate(2.0), "presence")
    run_started = time.perf_counter()
    events = 0
    while events < args.events:
        now, _, action, subject = heapq.heappop(plan)
        event: Event | None = None
        if action == "tick":
            event = Tick(now)
            later(now + 1.0, "tick")
        elif action == "arrive":
            contact = arrival(now)
            later(now + rng.expovariate(1 / 900.0), "abandon", contact.contact_id)
            event = contact
            later(now + rng.expovariate(3.0), "arrive")
        elif action == "presence":
            presence = rng.choices(["ready", "break", "busy", "offline"], [70, 20, 5, 5])[0]
            event = AgentStatus(rng.choice(agents), presence, now, "coffee")  # type: ignore[arg-type]
            later(now + rng.expovariate(2.0), "presence")
        elif action in ("accept", "reject"):
            cid, agent_id = subject
            if floor.offered.get(cid) == agent_id:
                cls = OfferAccepted if action == "accept" else OfferRejected
                event = cls(cid, agent_id, now)
        elif action in ("end", "transfer"):
            cid, agent_id = subject
            if floor.assigned.get(cid) == agent_id:
                if action == "end":
                    event = ContactEnded(cid, now)
                else:
                    event = Transfer(cid, now, to_queue_id=rng.choice(queues))
        elif subject[0] in floor.waiting.index:  # abandon, if still waiting
            event = ContactEnded(subject[0], now)
        if event is None:
            continue
        react(floor.run(event), now)
        events += 1
    run_s = time.perf_counter() - run_started

    # What the service asks after every event: positions, ETAs and queue figures.
    queries: list[int] = []
    for _ in range(2_000):
        some = floor.waiting.choice(rng)
        if some is None:
            break
        t0 = time.perf_counter_ns()
        engine.position(some)
        engine.eta(some)
        queries.append(time.perf_counter_ns() - t0)
    t0 = time.perf_counter_ns()
    for qid in queues:
        engine.queue_stats(qid)
    stats_all_ms = (time.perf_counter_ns() - t0) / 1e6

    samples = sorted(floor.samples)
    handle_s = sum(samples) / 1e9
    result = {
        "agents": args.agents,
        "queues": args.queues,
        "waiting_at_start": waiting_before,
        "waiting_at_end": len(floor.waiting),
        "simulated_s": round(now - START),
        "events": len(samples),
        "decisions": floor.decisions,
        "build_s": round(build_s, 2),
        "run_s": round(run_s, 2),
        "events_per_s": round(len(samples) / handle_s),
        "decisions_per_s": round(floor.decisions / handle_s),
        "p50_ms": round(statistics.median(samples) / 1e6, 3),
        "p99_ms": round(p99(samples) / 1e6, 3),
        "max_ms": round(samples[-1] / 1e6, 3),
        "p99_ms_by_event": {
            name: round(p99(values) / 1e6, 3) for name, values in sorted(floor.by_event.items())
        },
        "backlog_arrival_p99_ms": round(p99(piling) / 1e6, 3),
        "position_eta_p99_us": round(p99(queries) / 1e3, 1) if queries else None,
        "queue_stats_all_ms": round(stats_all_ms, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:>22}: {value}")
        print("target: p99 <= 1 ms ->", "MET" if result["p99_ms"] <= 1 else "MISSED")


if __name__ == "__main__":
    main()
