"""The ACD engine, one rule at a time: exact decisions for small, hand-made situations."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from hotline.acd.engine import (
    MEDIA,
    AcceptRefused,
    AcdEngine,
    AcdError,
    AgentStateChanged,
    AgentStatus,
    Assigned,
    ContactArrived,
    ContactEnded,
    Decision,
    Fallback,
    Membership,
    Offer,
    OfferAccepted,
    OfferRejected,
    OfferWithdrawn,
    Overflowed,
    QueueConfig,
    QueueStats,
    Refused,
    Released,
    Requeued,
    ScheduleWindow,
    Strategy,
    Tick,
    Transfer,
    utc_weekday_minute,
)
from hotline.acd.service import AcdService, _stored_media
from hotline.channels import ChannelRegistry
from hotline.messages import Outbound
from hotline.ports import MEDIA_KINDS, Capabilities, Channel, MediaKind

HOUR = 3600.0
DAY = 24 * HOUR


def week_clock(now: float) -> tuple[int, int]:
    """A fake local time: now=0 is Monday 00:00."""
    return int(now // DAY) % 7, int(now % DAY // 60)


def make(
    queues: Sequence[QueueConfig] = (QueueConfig("q"),),
    agents: Sequence[str] = (),
    *,
    capacity: int = 3,
    **kw: object,
) -> AcdEngine:
    """An engine with these queues and offline agents who are members of the first queue."""
    engine = AcdEngine(**kw)  # type: ignore[arg-type]
    for cfg in queues:
        engine.set_queue(cfg)
    for agent_id in agents:
        engine.set_agent(agent_id, capacity=capacity)
        engine.set_memberships(agent_id, [Membership(agent_id, queues[0].id)])
    return engine


def ready(engine: AcdEngine, agent_id: str, now: float) -> list[Decision]:
    return engine.handle(AgentStatus(agent_id, "ready", now))


def offers(decisions: Sequence[Decision]) -> list[tuple[str, str]]:
    return [(d.contact_id, d.agent_id) for d in decisions if isinstance(d, Offer)]


def serve(engine: AcdEngine, contact_id: str, agent_id: str, now: float) -> list[Decision]:
    return engine.handle(OfferAccepted(contact_id, agent_id, now))


# ------------------------------------------------------------------------------ basics
def test_contact_waits_then_is_offered_when_an_agent_gets_ready() -> None:
    engine = make(agents=["a"])
    assert engine.handle(ContactArrived("c1", "q", 10.0)) == []
    assert engine.position("c1") == 1
    assert ready(engine, "a", 12.0) == [
        AgentStateChanged("a", "ready", None),
        Offer("c1", "a", "q", 32.0),
    ]
    view = engine.contact_view("c1")
    assert view is not None and (view.state, view.agent_id) == ("offered", "a")
    assert engine.position("c1") is None
    assert serve(engine, "c1", "a", 13.0) == [Assigned("c1", "a", "q")]
    agent = engine.agent_view("a")
    assert (agent.state, agent.contacts, agent.offer, agent.answered) == ("ready", ("c1",), None, 1)
    assert engine.handle(ContactEnded("c1", 50.0)) == [Released("c1", "a")]
    assert engine.contact_view("c1") is None
    assert engine.handle(ContactEnded("c1", 51.0)) == []  # idempotent


def test_arrival_is_offered_immediately_to_a_ready_agent() -> None:
    engine = make(agents=["a"])
    ready(engine, "a", 0.0)
    assert engine.handle(ContactArrived("c1", "q", 1.0)) == [Offer("c1", "a", "q", 21.0)]


def test_blacklisted_key_is_refused_and_not_kept() -> None:
    engine = make(agents=["a"])
    engine.set_blacklist(["bad"])
    assert engine.handle(ContactArrived("c1", "q", 1.0, key="bad")) == [
        Refused("c1", "blacklisted")
    ]
    assert engine.contact_view("c1") is None
    assert engine.handle(ContactArrived("c2", "q", 1.0, key="good")) == []


def test_unknown_queue_falls_back_and_errors_are_raised() -> None:
    engine = make(agents=["a"])
    assert engine.handle(ContactArrived("c1", "nope", 1.0)) == [Fallback("c1", "unknown_queue")]
    engine.handle(ContactArrived("c2", "q", 1.0))
    with pytest.raises(AcdError):
        engine.handle(ContactArrived("c2", "q", 2.0))
    with pytest.raises(AcdError):
        engine.handle(AgentStatus("ghost", "ready", 2.0))
    with pytest.raises(AcdError):
        engine.handle(Transfer("c2", 2.0, to_queue_id="nope"))
    with pytest.raises(AcdError):
        QueueConfig("x", strategy="random")  # type: ignore[arg-type]
    assert issubclass(AcdError, ValueError)
    assert engine.position("c2") == 1  # the failed calls changed nothing


# ---------------------------------------------------------------------------- strategies
def strategy_engine(strategy: Strategy, n: int = 3, **cfg: object) -> AcdEngine:
    engine = make([QueueConfig("q", strategy=strategy, **cfg)], [f"a{i}" for i in range(1, n + 1)])  # type: ignore[arg-type]
    # a3 went ready first, a1 last: longest idle is a3.
    for i, agent_id in enumerate(reversed([f"a{i}" for i in range(1, n + 1)])):
        ready(engine, agent_id, float(i))
    return engine


def test_linear_takes_agents_in_the_order_they_joined() -> None:
    engine = strategy_engine("linear")
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0))) == [("c1", "a1")]
    assert offers(engine.handle(ContactArrived("c2", "q", 11.0))) == [("c2", "a2")]
    serve(engine, "c1", "a1", 12.0)
    assert offers(engine.handle(ContactArrived("c3", "q", 13.0))) == [("c3", "a1")]


def test_round_robin_continues_after_the_last_agent_offered() -> None:
    engine = strategy_engine("round_robin")
    got = []
    for i in range(5):
        decisions = engine.handle(ContactArrived(f"c{i}", "q", 10.0 + i))
        (contact, agent_id) = offers(decisions)[0]
        got.append(agent_id)
        serve(engine, contact, agent_id, 10.5 + i)
    assert got == ["a1", "a2", "a3", "a1", "a2"]


def test_fewest_answered_then_longest_idle() -> None:
    engine = strategy_engine("fewest_answered")
    # Nobody has answered yet: longest idle (a3, then a2).
    assert offers(engine.handle(ContactArrived("x0", "q", 5.0))) == [("x0", "a3")]
    assert offers(engine.handle(ContactArrived("x1", "q", 6.0))) == [("x1", "a2")]
    serve(engine, "x0", "a3", 8.0)
    serve(engine, "x1", "a2", 8.0)
    engine.handle(ContactEnded("x0", 9.0))
    engine.handle(ContactEnded("x1", 9.5))
    # a1 has answered nothing although a3 and a2 have been idle as long.
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0))) == [("c1", "a1")]
    assert offers(engine.handle(ContactArrived("c2", "q", 11.0))) == [("c2", "a3")]


def test_longest_idle_uses_when_the_agent_last_became_free() -> None:
    engine = strategy_engine("longest_idle")
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0))) == [("c1", "a3")]
    serve(engine, "c1", "a3", 11.0)
    engine.handle(ContactEnded("c1", 20.0))  # a3 free again at 20: now the most recent
    assert engine.agent_view("a3").idle_since == 20.0
    assert offers(engine.handle(ContactArrived("c2", "q", 21.0))) == [("c2", "a2")]
    assert offers(engine.handle(ContactArrived("c3", "q", 22.0))) == [("c3", "a1")]
    assert offers(engine.handle(ContactArrived("c4", "q", 23.0))) == [("c4", "a3")]


def test_agent_priority_prefers_the_lowest_penalty() -> None:
    engine = strategy_engine("agent_priority")
    for agent_id, penalty in (("a1", 2), ("a2", 0), ("a3", 1)):
        engine.set_memberships(agent_id, [Membership(agent_id, "q", penalty)])
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0))) == [("c1", "a2")]
    assert offers(engine.handle(ContactArrived("c2", "q", 11.0))) == [("c2", "a3")]
    assert offers(engine.handle(ContactArrived("c3", "q", 12.0))) == [("c3", "a1")]


def test_sticky_offers_the_last_agent_when_eligible() -> None:
    engine = strategy_engine("sticky", sticky_window=60.0)
    decisions = engine.handle(ContactArrived("c1", "q", 10.0, last_agent_id="a1"))
    assert offers(decisions) == [("c1", "a1")]


def test_sticky_waits_for_a_busy_last_agent_within_the_window() -> None:
    engine = make(
        [QueueConfig("q", strategy="sticky", sticky_window=60.0)], ["a1", "a2"], capacity=1
    )
    ready(engine, "a1", 0.0)
    ready(engine, "a2", 1.0)
    engine.handle(ContactArrived("x", "q", 2.0))
    serve(engine, "x", "a1", 3.0)  # a1 is full
    assert engine.handle(ContactArrived("c1", "q", 10.0, last_agent_id="a1")) == []
    view = engine.contact_view("c1")
    assert view is not None and view.held_for == "a1"
    # Someone else's contact still goes to a2: the hold only concerns c1.
    assert offers(engine.handle(ContactArrived("c2", "q", 11.0))) == [("c2", "a2")]
    engine.handle(OfferRejected("c2", "a2", 12.0))
    # a1 frees up inside the window: c1 goes to a1.
    assert offers(engine.handle(ContactEnded("x", 20.0))) == [("c1", "a1")]


def test_sticky_window_expiry_releases_the_contact_to_others() -> None:
    engine = make(
        [QueueConfig("q", strategy="sticky", sticky_window=60.0)], ["a1", "a2"], capacity=1
    )
    ready(engine, "a1", 0.0)
    ready(engine, "a2", 1.0)
    engine.handle(ContactArrived("x", "q", 2.0))
    serve(engine, "x", "a1", 3.0)
    engine.handle(ContactArrived("c1", "q", 10.0, last_agent_id="a1"))
    assert engine.handle(Tick(69.0)) == []
    assert engine.handle(Tick(70.0)) == [Offer("c1", "a2", "q", 90.0)]


def test_sticky_does_not_wait_for_a_last_agent_who_is_offline() -> None:
    engine = make([QueueConfig("q", strategy="sticky", sticky_window=60.0)], ["a1", "a2"])
    ready(engine, "a2", 1.0)
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0, last_agent_id="a1"))) == [
        ("c1", "a2")
    ]


def test_sticky_hold_ends_when_the_last_agent_logs_out() -> None:
    engine = make([QueueConfig("q", strategy="sticky", sticky_window=60.0)], ["a1", "a2"])
    engine.handle(AgentStatus("a1", "break", 0.0, reason="lunch"))
    ready(engine, "a2", 1.0)
    assert engine.handle(ContactArrived("c1", "q", 10.0, last_agent_id="a1")) == []
    assert engine.handle(AgentStatus("a1", "offline", 11.0)) == [
        AgentStateChanged("a1", "offline", None),
        Offer("c1", "a2", "q", 31.0),
    ]


# ------------------------------------------------------------------- order and priority
def test_fifo_within_a_priority_and_higher_priority_jumps_ahead() -> None:
    engine = make(agents=["a"], capacity=1)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 2.0))
    engine.handle(ContactArrived("vip", "q", 3.0, priority=2))
    engine.handle(ContactArrived("cb", "q", 4.0, priority=1))
    assert [engine.position(c) for c in ("vip", "cb", "c1", "c2")] == [1, 2, 3, 4]
    assert engine.waiting("q") == ["vip", "cb", "c1", "c2"]
    served = []
    now = 10.0
    decisions = ready(engine, "a", now)
    while offers(decisions):
        (contact, _) = offers(decisions)[0]
        served.append(contact)
        serve(engine, contact, "a", now + 1)
        decisions = engine.handle(ContactEnded(contact, now + 2))
        now += 3
    assert served == ["vip", "cb", "c1", "c2"]


def test_position_and_eta_follow_the_queue() -> None:
    engine = make(agents=["a", "b"], capacity=1)
    engine.handle(AgentStatus("a", "busy", 0.0))
    engine.handle(AgentStatus("b", "break", 0.0))
    for i in range(5):
        engine.handle(ContactArrived(f"c{i}", "q", float(i)))
    # Two logged-in agents of capacity 1, default handle time 120 s.
    assert [engine.position(f"c{i}") for i in range(5)] == [1, 2, 3, 4, 5]
    assert [engine.eta(f"c{i}") for i in range(5)] == [120.0, 120.0, 240.0, 240.0, 360.0]
    ready(engine, "a", 10.0)  # c0 offered
    assert engine.position("c0") is None and engine.eta("c0") is None
    assert engine.position("c4") == 4
    serve(engine, "c0", "a", 11.0)
    engine.handle(ContactEnded("c0", 71.0))  # handled in 60 s: EWMA moves towards 60
    assert engine.handle_time("q") == pytest.approx(120 + 0.2 * (60 - 120))
    assert engine.position("c4") == 3
    assert engine.eta("c4") == pytest.approx(2 * 108.0)
    assert engine.queue_stats("q") == QueueStats(
        waiting=3,
        offered=1,
        longest_wait_since=2.0,
        overflowed_in=0,
        agents_logged_in=2,
        agents_ready=1,
    )


def test_longest_wait_looks_at_every_priority() -> None:
    engine = make(agents=["a"])
    engine.handle(ContactArrived("late-vip", "q", 50.0, priority=3))
    engine.handle(ContactArrived("early", "q", 10.0))
    assert engine.queue_stats("q").longest_wait_since == 10.0


# ------------------------------------------------------------------------------ overflow
def overflow_world(**q1: object) -> AcdEngine:
    engine = make(
        [
            QueueConfig("q1", overflow_to="q2", **q1),  # type: ignore[arg-type]
            QueueConfig("q2", overflow_to="q1", overflow_after=30.0),
        ],
        [],
    )
    engine.set_agent("a1")
    engine.set_memberships("a1", [Membership("a1", "q1")])
    engine.set_agent("a2", capacity=1)
    engine.set_memberships("a2", [Membership("a2", "q2")])
    return engine


def test_timed_overflow_moves_the_contact_and_routes_it() -> None:
    engine = overflow_world(overflow_after=30.0)
    engine.handle(AgentStatus("a1", "break", 0.0))  # logged in: no immediate overflow
    ready(engine, "a2", 0.0)
    engine.handle(ContactArrived("x", "q2", 1.0))
    serve(engine, "x", "a2", 1.5)  # a2 is full
    assert engine.handle(ContactArrived("c1", "q1", 5.0)) == []
    assert engine.handle(Tick(34.9)) == []
    assert engine.handle(Tick(35.0)) == [Overflowed("c1", "q1", "q2")]
    view = engine.contact_view("c1")
    assert view is not None
    assert (view.queue_id, view.entered_queue_at, view.arrived_at) == ("q2", 35.0, 5.0)
    assert view.visited == ("q1", "q2")
    assert engine.queue_stats("q2").overflowed_in == 1
    # q2 would overflow back into q1 after 30 s, but q1 was visited already: no cycle.
    assert engine.handle(Tick(100.0)) == []
    assert engine.contact_view("c1").queue_id == "q2"  # type: ignore[union-attr]
    assert offers(engine.handle(ContactEnded("x", 101.0))) == [("c1", "a2")]


def test_overflow_is_immediate_when_nobody_is_logged_in() -> None:
    engine = overflow_world()
    ready(engine, "a2", 0.0)
    assert engine.handle(ContactArrived("c1", "q1", 5.0)) == [
        Overflowed("c1", "q1", "q2"),
        Offer("c1", "a2", "q2", 25.0),
    ]


def test_last_member_logging_out_overflows_the_waiting_contacts() -> None:
    engine = overflow_world()
    engine.handle(AgentStatus("a1", "busy", 0.0))
    engine.handle(AgentStatus("a2", "busy", 0.0))
    engine.handle(ContactArrived("c1", "q1", 1.0))
    engine.handle(ContactArrived("c2", "q1", 2.0))
    assert engine.handle(AgentStatus("a1", "offline", 3.0)) == [
        AgentStateChanged("a1", "offline", None),
        Overflowed("c1", "q1", "q2"),
        Overflowed("c2", "q1", "q2"),
    ]


def test_overflowed_contacts_interleave_by_original_arrival() -> None:
    engine = overflow_world(overflow_after=10.0)
    engine.handle(AgentStatus("a1", "break", 0.0))
    engine.handle(AgentStatus("a2", "break", 0.0))
    engine.handle(ContactArrived("q1-early", "q1", 1.0))
    engine.handle(ContactArrived("q2-mid", "q2", 2.0))
    engine.handle(ContactArrived("q1-late", "q1", 3.0))
    engine.handle(ContactArrived("q2-late", "q2", 4.0))
    assert engine.handle(Tick(13.0)) == [
        Overflowed("q1-early", "q1", "q2"),
        Overflowed("q1-late", "q1", "q2"),
    ]
    assert engine.waiting("q2") == ["q1-early", "q2-mid", "q1-late", "q2-late"]


def test_offered_contact_is_not_overflowed_until_the_offer_ends() -> None:
    engine = overflow_world(overflow_after=10.0)
    ready(engine, "a1", 0.0)
    ready(engine, "a2", 0.0)
    assert offers(engine.handle(ContactArrived("c1", "q1", 1.0))) == [("c1", "a1")]
    assert engine.handle(Tick(15.0)) == []
    assert engine.handle(OfferRejected("c1", "a1", 16.0)) == [
        OfferWithdrawn("c1", "a1", "rejected"),
        Overflowed("c1", "q1", "q2"),
        Offer("c1", "a2", "q2", 36.0),
    ]


def test_max_wait_counts_from_the_original_arrival() -> None:
    engine = overflow_world(overflow_after=10.0, max_wait=100.0)
    engine.handle(AgentStatus("a1", "break", 0.0))
    engine.handle(AgentStatus("a2", "break", 0.0))
    engine.set_queue(QueueConfig("q2", overflow_to="q1", overflow_after=30.0, max_wait=60.0))
    engine.handle(ContactArrived("c1", "q1", 0.0))
    assert engine.handle(Tick(10.0)) == [Overflowed("c1", "q1", "q2")]
    assert engine.handle(Tick(59.0)) == []
    assert engine.handle(Tick(60.0)) == [Fallback("c1", "max_wait")]
    assert engine.contact_view("c1") is None
    assert engine.queue_stats("q2").waiting == 0


# ----------------------------------------------------------------------------- capacity
def test_chat_capacity_and_derived_busy() -> None:
    engine = make(agents=["a"])
    ready(engine, "a", 0.0)
    for i in range(4):
        engine.handle(ContactArrived(f"c{i}", "q", 1.0 + i))
        if i < 3:
            decisions = serve(engine, f"c{i}", "a", 1.5 + i)
    assert decisions == [Assigned("c2", "a", "q"), AgentStateChanged("a", "busy", "capacity")]
    assert engine.agent_view("a").contacts == ("c0", "c1", "c2")
    assert engine.position("c3") == 1
    assert engine.handle(ContactEnded("c1", 10.0)) == [
        Released("c1", "a"),
        AgentStateChanged("a", "ready", None),
        Offer("c3", "a", "q", 30.0),
    ]


def test_realtime_is_exclusive() -> None:
    engine = make(agents=["a", "b"])
    ready(engine, "a", 0.0)
    ready(engine, "b", 1.0)
    engine.handle(ContactArrived("chat1", "q", 2.0))
    serve(engine, "chat1", "a", 2.5)
    # a has a chat: the call goes to b.
    assert offers(engine.handle(ContactArrived("call1", "q", 3.0, media="realtime"))) == [
        ("call1", "b")
    ]
    assert serve(engine, "call1", "b", 3.5) == [
        Assigned("call1", "b", "q"),
        AgentStateChanged("b", "busy", "capacity"),
    ]
    # b is on a call: chats go to a only, a second call waits.
    assert offers(engine.handle(ContactArrived("chat2", "q", 4.0))) == [("chat2", "a")]
    serve(engine, "chat2", "a", 4.5)
    assert engine.handle(ContactArrived("call2", "q", 5.0, media="realtime")) == []
    # A later chat is not held up behind the call nobody can take.
    assert offers(engine.handle(ContactArrived("chat3", "q", 6.0))) == [("chat3", "a")]
    assert offers(engine.handle(ContactEnded("call1", 7.0))) == [("call2", "b")]


def test_calls_go_only_to_agents_with_a_phone() -> None:
    engine = make(agents=["a", "b"])
    engine.set_agent("a", phone=False)
    ready(engine, "a", 0.0)  # idle longest, but has no phone
    ready(engine, "b", 1.0)
    assert offers(engine.handle(ContactArrived("call1", "q", 2.0, media="realtime"))) == [
        ("call1", "b")
    ]
    assert offers(engine.handle(ContactArrived("chat1", "q", 3.0))) == [("chat1", "a")]
    serve(engine, "call1", "b", 3.5)
    assert engine.handle(ContactArrived("call2", "q", 4.0, media="realtime")) == []
    # A phone is issued: the waiting call goes to a once a is free of chats.
    engine.set_agent("a", phone=True)
    serve(engine, "chat1", "a", 4.5)
    assert offers(engine.handle(ContactEnded("chat1", 5.0))) == [("call2", "a")]


def test_outstanding_offer_counts_against_capacity() -> None:
    engine = make(agents=["a"], capacity=2)
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 1.5)
    assert offers(engine.handle(ContactArrived("c2", "q", 2.0))) == [("c2", "a")]
    assert engine.handle(ContactArrived("c3", "q", 3.0)) == []  # one offer at a time
    serve(engine, "c2", "a", 4.0)
    assert engine.position("c3") == 1  # a is full now


# ------------------------------------------------------------------------ deferred work
def deferred(contact_id: str, now: float, queue: str = "q") -> ContactArrived:
    return ContactArrived(contact_id, queue, now, media="deferred")


def test_the_media_kinds_are_the_channel_seams() -> None:
    assert set(MEDIA) == set(MEDIA_KINDS)


def test_an_unknown_media_kind_is_an_error() -> None:
    engine = make(agents=["a"])
    with pytest.raises(AcdError):
        engine.handle(ContactArrived("c1", "q", 1.0, media="voice"))  # type: ignore[arg-type]
    with pytest.raises(AcdError):
        engine.restore_contact("c1", "q", 0, "sms", 1.0, 1.0, ["q"])  # type: ignore[arg-type]
    with pytest.raises(AcdError):
        engine.set_agent("a", deferred_capacity=-1)


def test_several_deferred_contacts_up_to_the_deferred_capacity() -> None:
    engine = make(agents=["a"], capacity=1)
    engine.set_agent("a", capacity=1, deferred_capacity=3)
    ready(engine, "a", 0.0)
    for i in range(3):
        assert engine.handle(deferred(f"d{i}", 1.0 + i)) == [Offer(f"d{i}", "a", "q", 21.0 + i)]
        # Deferred work does not make the agent busy.
        assert serve(engine, f"d{i}", "a", 1.5 + i) == [Assigned(f"d{i}", "a", "q")]
    assert engine.handle(deferred("d3", 5.0)) == []  # the deferred capacity is full
    assert engine.position("d3") == 1
    view = engine.agent_view("a")
    assert (view.state, view.contacts, view.deferred_capacity) == (
        "ready",
        ("d0", "d1", "d2"),
        3,
    )
    # Not counted against the chat capacity (1): a chat still comes.
    assert offers(engine.handle(ContactArrived("c1", "q", 6.0))) == [("c1", "a")]
    assert serve(engine, "c1", "a", 6.5) == [
        Assigned("c1", "a", "q"),
        AgentStateChanged("a", "busy", "capacity"),
    ]
    # Full on chats, yet deferred work comes when there is deferred room again.
    assert engine.handle(ContactEnded("d0", 7.0)) == [
        Released("d0", "a"),
        Offer("d3", "a", "q", 27.0),
    ]
    serve(engine, "d3", "a", 7.5)
    assert engine.handle(ContactArrived("c2", "q", 8.0)) == []  # chats: still full


def test_a_call_is_offered_to_an_agent_holding_deferred_work() -> None:
    engine = make(agents=["a"], capacity=1)
    ready(engine, "a", 0.0)
    for i in range(2):
        engine.handle(deferred(f"d{i}", 1.0 + i))
        serve(engine, f"d{i}", "a", 1.5 + i)
    assert offers(engine.handle(ContactArrived("call1", "q", 5.0, media="realtime"))) == [
        ("call1", "a")
    ]
    assert serve(engine, "call1", "a", 5.5) == [
        Assigned("call1", "a", "q"),
        AgentStateChanged("a", "busy", "capacity"),
    ]
    assert engine.agent_view("a").contacts == ("d0", "d1", "call1")


def test_no_deferred_work_during_a_call() -> None:
    engine = make(agents=["a", "b"])
    ready(engine, "a", 0.0)
    ready(engine, "b", 1.0)
    engine.handle(ContactArrived("call1", "q", 2.0, media="realtime"))
    serve(engine, "call1", "a", 2.5)
    # a is in a call: deferred work goes to b, and waits while b has no room for it.
    engine.set_agent("b", deferred_capacity=1)
    assert offers(engine.handle(deferred("d1", 3.0))) == [("d1", "b")]
    serve(engine, "d1", "b", 3.5)
    assert engine.handle(deferred("d2", 4.0)) == []
    assert engine.handle(ContactArrived("c1", "q", 5.0)) == [Offer("c1", "b", "q", 25.0)]
    serve(engine, "c1", "b", 5.5)
    # The call ends: a takes the waiting deferred work.
    assert engine.handle(ContactEnded("call1", 6.0)) == [
        Released("call1", "a"),
        AgentStateChanged("a", "ready", None),
        Offer("d2", "a", "q", 26.0),
    ]


def test_an_offered_call_holds_back_deferred_work_and_chats() -> None:
    engine = make(agents=["a"])
    ready(engine, "a", 0.0)
    assert offers(engine.handle(ContactArrived("call1", "q", 1.0, media="realtime"))) == [
        ("call1", "a")
    ]
    assert engine.handle(deferred("d1", 2.0)) == []  # one offer at a time
    serve(engine, "call1", "a", 3.0)
    assert engine.handle(Tick(4.0)) == []  # in the call: nothing else
    assert offers(engine.handle(ContactEnded("call1", 5.0))) == [("d1", "a")]


def test_deferred_only_agent_takes_no_live_work() -> None:
    engine = make(agents=["a"], capacity=0)
    ready(engine, "a", 0.0)  # capacity 0: reported busy, as before
    assert engine.handle(ContactArrived("c1", "q", 1.0)) == []
    assert engine.handle(ContactArrived("call1", "q", 2.0, media="realtime")) == []
    # Service order across media kinds: d1 is later than c1 and call1, but only d1 fits.
    assert offers(engine.handle(deferred("d1", 3.0))) == [("d1", "a")]


def test_deferred_work_waits_in_service_order_with_live_work() -> None:
    engine = make(agents=["a"])
    engine.handle(deferred("d1", 1.0))
    engine.handle(ContactArrived("c1", "q", 2.0))
    engine.handle(deferred("d2", 3.0))
    assert offers(ready(engine, "a", 4.0)) == [("d1", "a")]  # the earliest first
    assert offers(serve(engine, "d1", "a", 5.0)) == [("c1", "a")]
    assert offers(serve(engine, "c1", "a", 6.0)) == [("d2", "a")]


def test_deferred_position_and_eta_use_the_deferred_capacity() -> None:
    engine = make(agents=["a", "b"], capacity=3)
    for agent_id in ("a", "b"):
        engine.set_agent(agent_id, capacity=3, deferred_capacity=1)
        engine.handle(AgentStatus(agent_id, "break", 0.0))
    for i in range(3):
        engine.handle(ContactArrived(f"c{i}", "q", 1.0 + 2 * i))
        engine.handle(deferred(f"d{i}", 2.0 + 2 * i))
    assert engine.waiting("q") == ["c0", "d0", "c1", "d1", "c2", "d2"]
    # Live and deferred work are counted apart; 6 chats or 2 deferred at a time.
    assert [engine.position(f"c{i}") for i in range(3)] == [1, 2, 3]
    assert [engine.position(f"d{i}") for i in range(3)] == [1, 2, 3]
    assert [engine.eta(f"c{i}") for i in range(3)] == [120.0, 120.0, 120.0]
    assert [engine.eta(f"d{i}") for i in range(3)] == [120.0, 120.0, 240.0]
    # Deferred work keeps its own handle time.
    engine.handle(AgentStatus("a", "ready", 10.0))
    assert offers(engine.handle(Tick(10.0))) == []  # the offer came with "ready"
    serve(engine, "c0", "a", 11.0)
    engine.handle(ContactEnded("c0", 71.0))  # 60 s
    assert engine.agent_view("a").offer == "d0"
    serve(engine, "d0", "a", 72.0)
    engine.handle(ContactEnded("d0", 672.0))  # 600 s
    assert engine.handle_time("q") == pytest.approx(120 + 0.2 * (60 - 120))
    assert engine.handle_time("q", "deferred") == pytest.approx(120 + 0.2 * (600 - 120))


def test_restored_agent_keeps_its_deferred_capacity() -> None:
    engine = make(agents=["a"])
    engine.set_agent("a", capacity=2, deferred_capacity=4)
    engine.restore_agent("a", 2, "ready", None, since=5.0)
    assert engine.agent_view("a").deferred_capacity == 4
    engine.restore_contact("d1", "q", 0, "deferred", 1.0, 1.0, ["q"], agent_id="a")
    engine.restore_contact("c1", "q", 0, "chat", 1.0, 1.0, ["q"], agent_id="a")
    engine.restore_contact("c2", "q", 0, "chat", 2.0, 2.0, ["q"], agent_id="a")
    view = engine.agent_view("a")
    assert (view.state, view.reason) == ("busy", "capacity")  # 2 chats of 2
    assert offers(engine.handle(deferred("d2", 6.0))) == [("d2", "a")]


# -------------------------------------------------------------------- offers and agents
def test_offer_timeout_moves_on_to_the_next_agent() -> None:
    engine = make([QueueConfig("q", strategy="linear", offer_timeout=10.0)], ["a", "b"])
    ready(engine, "a", 0.0)
    ready(engine, "b", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert engine.handle(Tick(11.0)) == [
        OfferWithdrawn("c1", "a", "timeout"),
        Offer("c1", "b", "q", 21.0),
    ]
    assert engine.agent_view("a").missed == 1


def test_a_missed_contact_is_not_offered_back_at_once() -> None:
    engine = make([QueueConfig("q", offer_timeout=10.0)], ["a", "b"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 2.0))
    # a missed c1: a gets c2 meanwhile; b, arriving later, gets c1 first.
    assert engine.handle(Tick(11.0)) == [
        OfferWithdrawn("c1", "a", "timeout"),
        Offer("c2", "a", "q", 21.0),
    ]
    assert offers(ready(engine, "b", 12.0)) == [("c1", "b")]


def test_declined_contact_comes_back_after_retry_when_nobody_else_is_there() -> None:
    engine = make([QueueConfig("q", offer_timeout=10.0)], ["a"], retry_after=5.0)
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert engine.handle(OfferRejected("c1", "a", 2.0)) == [OfferWithdrawn("c1", "a", "rejected")]
    assert engine.handle(Tick(6.9)) == []
    assert engine.handle(Tick(7.0)) == [Offer("c1", "a", "q", 17.0)]


def test_repeated_timeouts_put_the_agent_on_break() -> None:
    engine = make([QueueConfig("q", offer_timeout=10.0)], ["a"], max_missed_offers=2)
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 1.0))
    assert offers(engine.handle(Tick(11.0))) == [("c2", "a")]
    assert engine.handle(Tick(21.0)) == [
        OfferWithdrawn("c2", "a", "timeout"),
        AgentStateChanged("a", "break", "missed_offers"),
    ]
    view = engine.agent_view("a")
    assert (view.state, view.reason, view.missed, view.since) == ("break", "missed_offers", 2, 21.0)
    # Going ready again starts a fresh count and routes.
    decisions = ready(engine, "a", 30.0)
    assert decisions == [AgentStateChanged("a", "ready", None), Offer("c1", "a", "q", 40.0)]
    assert engine.agent_view("a").missed == 0


def test_accepting_resets_the_missed_count() -> None:
    engine = make([QueueConfig("q", offer_timeout=10.0)], ["a"], max_missed_offers=2)
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 1.0))
    engine.handle(Tick(11.0))  # missed c1, offered c2
    serve(engine, "c2", "a", 12.0)
    assert engine.agent_view("a").missed == 0


def test_reject_moves_on_to_another_agent() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b"])
    ready(engine, "a", 0.0)
    ready(engine, "b", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert engine.handle(OfferRejected("c1", "a", 2.0)) == [
        OfferWithdrawn("c1", "a", "rejected"),
        Offer("c1", "b", "q", 22.0),
    ]
    assert engine.handle(OfferRejected("c1", "a", 3.0)) == []  # not a's offer any more


def test_two_agents_racing_to_accept() -> None:
    engine = make(agents=["a", "b"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert serve(engine, "c1", "b", 2.0) == [AcceptRefused("c1", "b", "not_offered")]
    assert serve(engine, "c1", "a", 2.0) == [Assigned("c1", "a", "q")]
    assert serve(engine, "c1", "b", 2.0) == [AcceptRefused("c1", "b", "taken")]
    assert serve(engine, "c1", "a", 2.0) == []  # the holder clicking twice
    engine.handle(ContactEnded("c1", 3.0))
    assert serve(engine, "c1", "b", 4.0) == [AcceptRefused("c1", "b", "gone")]


def test_break_withdraws_the_offer_and_keeps_contacts() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 1.5)
    assert offers(engine.handle(ContactArrived("c2", "q", 2.0))) == [("c2", "a")]
    ready(engine, "b", 2.5)
    assert engine.handle(AgentStatus("a", "break", 3.0, reason="lunch")) == [
        OfferWithdrawn("c2", "a", "agent_unavailable"),
        AgentStateChanged("a", "break", "lunch"),
        Offer("c2", "b", "q", 23.0),
    ]
    view = engine.agent_view("a")
    assert (view.state, view.reason, view.contacts) == ("break", "lunch", ("c1",))
    assert engine.handle(AgentStatus("a", "busy", 4.0)) == [AgentStateChanged("a", "busy", None)]
    assert engine.handle(AgentStatus("a", "busy", 5.0)) == []


def test_going_offline_requeues_contacts_with_their_arrival_and_priority() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0, priority=1))
    serve(engine, "c1", "a", 1.5)
    engine.handle(ContactArrived("c2", "q", 2.0))
    serve(engine, "c2", "a", 2.5)
    engine.handle(ContactArrived("c3", "q", 3.0))  # offered to a
    engine.handle(ContactArrived("c4", "q", 4.0))  # waits
    assert engine.handle(AgentStatus("a", "offline", 10.0)) == [
        OfferWithdrawn("c3", "a", "agent_unavailable"),
        Requeued("c1", "a", "q"),
        Requeued("c2", "a", "q"),
        AgentStateChanged("a", "offline", None),
    ]
    assert engine.waiting("q") == ["c1", "c2", "c3", "c4"]
    view = engine.contact_view("c1")
    assert view is not None and (view.arrived_at, view.priority, view.state) == (1.0, 1, "waiting")
    assert offers(ready(engine, "b", 11.0)) == [("c1", "b")]


def test_wrap_up_holds_new_offers_until_it_ends() -> None:
    engine = make([QueueConfig("q", wrap_up=30.0)], ["a"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 2.0)
    engine.handle(ContactArrived("c2", "q", 3.0))
    serve(engine, "c2", "a", 4.0)
    assert engine.handle(ContactEnded("c1", 10.0)) == [
        Released("c1", "a"),
        AgentStateChanged("a", "wrap_up", None),
    ]
    assert engine.handle(ContactArrived("c3", "q", 11.0)) == []
    assert engine.agent_view("a").contacts == ("c2",)  # c2 continues
    assert engine.handle(Tick(39.0)) == []
    assert engine.handle(Tick(40.0)) == [
        AgentStateChanged("a", "ready", None),
        Offer("c3", "a", "q", 60.0),
    ]


def test_abandoned_offer_frees_the_agent() -> None:
    engine = make(agents=["a"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 2.0))
    assert engine.handle(ContactEnded("c1", 3.0)) == [
        OfferWithdrawn("c1", "a", "abandoned"),
        Released("c1", None),
        Offer("c2", "a", "q", 23.0),
    ]


# ------------------------------------------------------------------------------ transfer
def test_transfer_to_another_queue_keeps_arrival_and_skips_wrap_up() -> None:
    engine = make(
        [QueueConfig("q", wrap_up=30.0), QueueConfig("en")],
        ["a"],
    )
    engine.set_agent("b")
    engine.set_memberships("b", [Membership("b", "en")])
    ready(engine, "a", 0.0)
    ready(engine, "b", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0, priority=1))
    serve(engine, "c1", "a", 2.0)
    assert engine.handle(Transfer("c1", 5.0, to_queue_id="en")) == [
        Requeued("c1", "a", "en"),
        Offer("c1", "b", "en", 25.0),
    ]
    view = engine.contact_view("c1")
    assert view is not None
    assert (view.arrived_at, view.priority, view.visited) == (1.0, 1, ("q", "en"))
    assert engine.agent_view("a").state == "ready"  # no wrap-up after a transfer


def test_transfer_to_an_agent_targets_only_that_agent() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b", "sup"])
    engine.set_memberships("sup", [])  # a supervisor outside the queue
    for agent_id in ("a", "b"):
        ready(engine, agent_id, 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 2.0)
    assert engine.handle(Transfer("c1", 5.0, to_agent_id="sup")) == [Requeued("c1", "a", "q")]
    view = engine.contact_view("c1")
    assert view is not None and view.target_agent_id == "sup"
    assert engine.handle(ContactArrived("c2", "q", 6.0)) == [Offer("c2", "a", "q", 26.0)]
    assert engine.handle(AgentStatus("sup", "ready", 7.0)) == [
        AgentStateChanged("sup", "ready", None),
        Offer("c1", "sup", "q", 27.0),
    ]
    assert serve(engine, "c1", "sup", 8.0) == [Assigned("c1", "sup", "q")]
    assert engine.contact_view("c1").target_agent_id is None  # type: ignore[union-attr]


def test_transfer_does_not_hand_the_contact_straight_back() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 2.0)
    ready(engine, "b", 2.0)
    assert offers(engine.handle(Transfer("c1", 5.0))) == [("c1", "b")]


# ------------------------------------------------------------------------------ schedule
def test_schedule_membership_is_active_mon_9_to_17_only() -> None:
    mon_9_17 = (ScheduleWindow(frozenset({0}), 9 * 60, 17 * 60),)
    engine = AcdEngine(local_time=week_clock)
    engine.set_queue(QueueConfig("q"))
    engine.set_agent("a")
    engine.set_memberships("a", [Membership("a", "q", schedule=mon_9_17)])
    ready(engine, "a", 8 * HOUR)
    assert engine.queue_stats("q").agents_logged_in == 0
    assert engine.handle(ContactArrived("c1", "q", 8.5 * HOUR)) == []
    assert engine.handle(Tick(9 * HOUR - 1)) == []
    assert offers(engine.handle(Tick(9 * HOUR))) == [("c1", "a")]
    serve(engine, "c1", "a", 9 * HOUR + 1)
    assert engine.queue_stats("q").agents_ready == 1
    engine.handle(Tick(17 * HOUR))
    assert engine.queue_stats("q").agents_logged_in == 0
    assert engine.handle(ContactArrived("c2", "q", 17 * HOUR + 5)) == []
    # Tuesday 10:00: not a Monday.
    assert engine.handle(Tick(DAY + 10 * HOUR)) == []
    # Next Monday 9:00.
    assert offers(engine.handle(Tick(7 * DAY + 9 * HOUR))) == [("c2", "a")]


def test_schedule_window_wrapping_past_midnight() -> None:
    night = ScheduleWindow(frozenset({0}), 22 * 60, 6 * 60)  # Monday 22:00 - Tuesday 06:00
    assert night.covers(0, 23 * 60)
    assert night.covers(1, 5 * 60)
    assert not night.covers(1, 23 * 60)
    assert not night.covers(0, 5 * 60)
    assert utc_weekday_minute(0.0) == (3, 0)  # 1970-01-01 was a Thursday
    assert utc_weekday_minute(4 * DAY + 61) == (0, 1)


def test_unscheduled_queue_overflows_when_the_schedule_ends() -> None:
    mon_9_17 = (ScheduleWindow(frozenset({0}), 9 * 60, 17 * 60),)
    engine = AcdEngine(local_time=week_clock)
    engine.set_queue(QueueConfig("day", overflow_to="night"))
    engine.set_queue(QueueConfig("night"))
    engine.set_agent("a")
    engine.set_memberships("a", [Membership("a", "day", schedule=mon_9_17)])
    engine.handle(AgentStatus("a", "busy", 10 * HOUR))
    engine.handle(ContactArrived("c1", "day", 16 * HOUR))
    assert engine.handle(Tick(17 * HOUR)) == [Overflowed("c1", "day", "night")]


# ---------------------------------------------------------------------- restore & config
def test_restore_then_tick_routes() -> None:
    engine = make([QueueConfig("q", max_wait=600.0)], ["a", "b"])
    engine.restore_agent("a", 3, "ready", None, since=100.0, answered=7)
    engine.restore_agent("b", 1, "ready", None, since=50.0)
    engine.restore_contact("served", "q", 0, "chat", 90.0, 90.0, ["q"], agent_id="b")
    engine.restore_contact("w1", "q", 0, "chat", 120.0, 120.0, ["q"])
    engine.restore_contact("w2", "q", 1, "chat", 130.0, 130.0, ["q"])
    engine.restore_contact("old", "q", 0, "chat", 0.0, 0.0, ["q"])
    engine.restore_contact("lost", "gone", 0, "chat", 0.0, 0.0, ["gone"])
    view = engine.agent_view("b")
    assert (view.state, view.contacts, view.since) == ("busy", ("served",), 50.0)
    assert engine.agent_view("a").answered == 7
    assert engine.handle(Tick(700.0)) == [
        Fallback("lost", "unknown_queue"),
        Fallback("old", "max_wait"),
        Offer("w2", "a", "q", 720.0),
    ]
    assert engine.position("w1") == 1
    with pytest.raises(AcdError):
        engine.restore_contact("w1", "q", 0, "chat", 1.0, 1.0, ["q"])


def test_remove_queue_falls_back_its_contacts() -> None:
    engine = make([QueueConfig("q"), QueueConfig("other")], ["a"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 1.5)
    engine.handle(ContactArrived("c2", "q", 2.0))
    engine.handle(ContactArrived("c3", "q", 3.0))
    assert engine.remove_queue("q") == [
        OfferWithdrawn("c2", "a", "queue_removed"),
        Fallback("c2", "queue_removed"),
        Fallback("c3", "queue_removed"),
    ]
    assert engine.agent_view("a").contacts == ("c1",)  # being served: stays
    assert engine.remove_queue("q") == []
    with pytest.raises(AcdError):
        engine.queue_stats("q")


def test_capacity_change_is_reported_with_the_next_event() -> None:
    engine = make(agents=["a"], capacity=2)
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    serve(engine, "c1", "a", 1.5)
    engine.set_agent("a", capacity=1)
    assert engine.handle(Tick(2.0)) == [AgentStateChanged("a", "busy", "capacity")]


def test_new_membership_routes_on_the_next_event() -> None:
    engine = make([QueueConfig("q"), QueueConfig("extra")], ["a"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "extra", 1.0))
    engine.set_memberships("a", [Membership("a", "q"), Membership("a", "extra", penalty=1)])
    assert engine.handle(Tick(2.0)) == [Offer("c1", "a", "extra", 22.0)]


def test_agent_takes_the_lowest_penalty_queue_first() -> None:
    engine = make([QueueConfig("main"), QueueConfig("backup")])
    engine.set_agent("a")
    engine.set_memberships(
        "a", [Membership("a", "backup", penalty=1), Membership("a", "main", penalty=0)]
    )
    engine.handle(ContactArrived("b1", "backup", 1.0, priority=5))
    engine.handle(ContactArrived("m1", "main", 2.0))
    assert offers(ready(engine, "a", 3.0)) == [("m1", "a")]


def test_snapshot_is_json() -> None:
    engine = make(agents=["a"])
    engine.set_agent("s")
    engine.set_memberships(
        "s", [Membership("s", "q", schedule=(ScheduleWindow(frozenset({1, 2}), 60, 120),))]
    )
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 2.0))
    snap = json.loads(json.dumps(engine.snapshot()))
    assert snap["queues"]["q"]["waiting"] == ["c2"]
    assert snap["contacts"]["c1"]["state"] == "offered"
    assert snap["agents"]["a"]["offer"] == "c1"
    assert snap["agents"]["s"]["memberships"][0]["schedule"][0]["weekdays"] == [1, 2]


def test_targeted_contact_declined_by_its_agent_returns_to_the_queue() -> None:
    engine = make([QueueConfig("q", strategy="linear")], ["a", "b"])
    ready(engine, "a", 0.0)
    assert engine.handle(ContactArrived("c1", "q", 1.0, target_agent_id="b")) == []
    assert engine.contact_view("c1").target_agent_id == "b"  # type: ignore[union-attr]
    assert offers(ready(engine, "b", 2.0)) == [("c1", "b")]
    assert engine.handle(OfferRejected("c1", "b", 3.0)) == [
        OfferWithdrawn("c1", "b", "rejected"),
        Offer("c1", "a", "q", 23.0),
    ]


def test_max_wait_during_an_offer_applies_when_the_offer_ends() -> None:
    engine = make([QueueConfig("q", max_wait=30.0, offer_timeout=60.0)], ["a"])
    ready(engine, "a", 0.0)
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert engine.handle(Tick(40.0)) == []  # offered: the agent may still take it
    assert engine.handle(OfferRejected("c1", "a", 41.0)) == [
        OfferWithdrawn("c1", "a", "rejected"),
        Fallback("c1", "max_wait"),
    ]


def test_queue_update_reschedules_waiting_contacts() -> None:
    engine = make(agents=["a"])
    engine.handle(AgentStatus("a", "break", 0.0))
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.set_queue(QueueConfig("q", max_wait=5.0))
    engine.set_queue(QueueConfig("q", max_wait=5.0))  # idempotent
    assert engine.handle(Tick(6.0)) == [Fallback("c1", "max_wait")]


def test_waiting_contact_that_leaves_is_released() -> None:
    engine = make(agents=["a"])
    engine.handle(ContactArrived("c1", "q", 1.0))
    engine.handle(ContactArrived("c2", "q", 2.0))
    assert engine.handle(ContactEnded("c1", 3.0)) == [Released("c1", None)]
    assert engine.position("c2") == 1


def test_transfer_of_a_waiting_contact_to_another_queue() -> None:
    engine = make([QueueConfig("q"), QueueConfig("en")], ["a"])
    engine.handle(ContactArrived("c1", "q", 1.0))
    assert engine.handle(Transfer("c1", 2.0, to_queue_id="en")) == [Requeued("c1", None, "en")]
    view = engine.contact_view("c1")
    assert view is not None and (view.queue_id, view.entered_queue_at) == ("en", 2.0)


def test_restore_assigned_to_an_unknown_agent_is_requeued() -> None:
    engine = make(agents=["a"])
    engine.restore_contact("c1", "q", 0, "chat", 1.0, 1.0, ["q"], agent_id="ghost")
    assert engine.handle(Tick(2.0)) == [Requeued("c1", "ghost", "q")]
    assert engine.position("c1") == 1


def test_member_order_can_be_set_explicitly() -> None:
    engine = strategy_engine("linear")
    engine.set_member_order("q", ["a3", "a1"])
    assert offers(engine.handle(ContactArrived("c1", "q", 10.0))) == [("c1", "a3")]
    assert offers(engine.handle(ContactArrived("c2", "q", 11.0))) == [("c2", "a1")]
    assert offers(engine.handle(ContactArrived("c3", "q", 12.0))) == [("c3", "a2")]


# ------------------------------------------------- the service: media kinds by channel
def _channel(channel_name: str, media: MediaKind) -> Channel:
    class Fake(Channel):
        name = channel_name
        capabilities = Capabilities(media=media, buttons=False)

        async def deliver(self, message: Outbound) -> None: ...

    return Fake()


class _Hub:
    """The one thing ``AcdService.media`` asks of the hub: its channel registry."""

    def __init__(self, *channels: tuple[str, MediaKind]) -> None:
        self.channels = ChannelRegistry()
        for channel_name, media in channels:
            self.channels.register(_channel(channel_name, media))


def test_service_takes_the_media_kind_from_the_channel_registry() -> None:
    hub = _Hub(("phone", "realtime"), ("web", "chat"), ("text", "deferred"))
    service = AcdService(None, hub)  # type: ignore[arg-type]
    assert [service.media(n) for n in ("phone", "web", "text", "gone")] == [
        "realtime",
        "chat",
        "deferred",
        "chat",  # not registered: chat
    ]


def test_stored_rows_from_before_media_kinds_are_read() -> None:
    assert [_stored_media(v) for v in ("chat", "realtime", "deferred", "voice")] == [
        "chat",
        "realtime",
        "deferred",
        "realtime",
    ]
