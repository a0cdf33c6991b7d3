"""The client address behind trusted proxies, the per-address limit and the bot gate.

Pure units (no storage, no Rasa): the address rules, with forged headers from peers we
do not trust; the GCRA limit on an injected clock; the gate's ordering and limits on
real asyncio tasks.
"""

from __future__ import annotations

import asyncio

import pytest

from hotline.bot import BotOverloaded
from hotline.botgate import BotGate
from hotline.clientip import bucket, client_address, parse_ip, parse_networks
from hotline.config import ConfigError, load_settings
from hotline.ratelimit import KeyedRateLimit

PROXIES = parse_networks("10.0.0.1, 172.16.0.0/12, ::1")


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], ()) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    # A client talking to us directly may write whatever it likes in the header.
    assert client_address("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", ["10.0.0.1, 172.16.5.5"], PROXIES) == "203.0.113.9"


def test_a_trusted_proxy_forwards_the_right_most_untrusted_hop() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1"], PROXIES) == "198.51.100.1"
    # The client prepended a forged address; our proxy appended the one it saw.
    assert client_address("10.0.0.1", ["1.2.3.4, 198.51.100.1"], PROXIES) == "198.51.100.1"
    # Two of our proxies in a row (the inner one appended the outer one's address).
    assert (
        client_address("10.0.0.1", ["6.6.6.6, 198.51.100.1, 172.16.0.7"], PROXIES) == "198.51.100.1"
    )
    # Several header lines are one list, in order.
    assert client_address("10.0.0.1", ["6.6.6.6", "198.51.100.1"], PROXIES) == "198.51.100.1"


def test_a_trusted_proxy_without_the_header_is_the_client() -> None:
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_every_hop_trusted_gives_the_left_most() -> None:
    assert client_address("10.0.0.1", ["172.16.0.2, 172.16.0.3"], PROXIES) == "172.16.0.2"


def test_garbage_stops_at_the_last_hop_we_know() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1, unknown"], PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", ["nonsense, 172.16.0.2"], PROXIES) == "172.16.0.2"
    assert client_address("10.0.0.1", [""], PROXIES) == "10.0.0.1"


def test_addresses_as_proxies_write_them() -> None:
    assert str(parse_ip("198.51.100.1:4711")) == "198.51.100.1"
    assert str(parse_ip("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_ip("::ffff:198.51.100.1")) == "198.51.100.1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("example.org") is None and parse_ip(None) is None
    assert client_address("::1", ["2001:db8::5"], PROXIES) == "2001:db8::5"


def test_limits_count_ipv6_per_64() -> None:
    assert bucket("2001:db8:1:2:aaaa::1") == bucket("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert bucket("2001:db8:1:3::1") != bucket("2001:db8:1:2::1")
    assert bucket("198.51.100.1") == "198.51.100.1"
    assert bucket(None) == "unknown"


def test_trusted_proxies_setting_is_validated() -> None:
    base = {"HOTLINE_RASA_TOKEN": "t" * 20, "HOTLINE_SECRET_KEY": "00" * 32}
    settings = load_settings(
        {**base, "HOTLINE_TRUSTED_PROXIES": "10.0.0.1,192.168.0.0/16"}, generate_secrets=False
    )
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.1/32", "192.168.0.0/16"]
    assert load_settings(base, generate_secrets=False).trusted_proxies == ()
    with pytest.raises(ConfigError, match=r"HOTLINE_TRUSTED_PROXIES: 'proxy\.lan'"):
        load_settings(
            {**base, "HOTLINE_TRUSTED_PROXIES": "10.0.0.1,proxy.lan"}, generate_secrets=False
        )
    with pytest.raises(ConfigError, match="HOTLINE_RASA_CONCURRENCY"):
        load_settings({**base, "HOTLINE_RASA_CONCURRENCY": "-1"}, generate_secrets=False)
    with pytest.raises(ConfigError, match="HOTLINE_BOT_MAX_WAIT"):
        load_settings({**base, "HOTLINE_BOT_MAX_WAIT": "0"}, generate_secrets=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_allows_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    limit = KeyedRateLimit(3, 60, clock=clock)
    assert [limit.take("a") for _ in range(3)] == [0, 0, 0]
    assert limit.take("a") == 20  # the next one is 60/3 s away
    assert limit.peek("a") == 20
    assert limit.take("b") == 0  # another key is untouched
    clock.now += 19.5
    assert limit.take("a") == 1
    clock.now += 0.5
    assert limit.take("a") == 0
    assert limit.take("a") == 20


def test_limit_forgets_keys_whose_bucket_is_full_again() -> None:
    clock = Clock()
    limit = KeyedRateLimit(2, 10, clock=clock)
    for n in range(1000):
        limit.take(f"k{n}")
    assert len(limit) == 1000
    clock.now += 11
    limit.take("fresh")
    assert len(limit) == 1


def test_limit_holds_at_most_max_keys() -> None:
    limit = KeyedRateLimit(5, 60, max_keys=100, clock=Clock())
    for n in range(1000):
        limit.take(f"k{n}")
    assert len(limit) == 100


async def test_gate_serves_turns_before_greetings_in_order() -> None:
    gate = BotGate(1, max_waiting=10, max_wait=30)
    served: list[str] = []
    holder = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.turn():
            holder.set()
            await release.wait()

    async def call(kind: str, name: str) -> None:
        async with gate.turn() if kind == "turn" else gate.greeting():
            served.append(name)

    first = asyncio.create_task(hold())
    await holder.wait()
    tasks = [asyncio.create_task(call("greeting", "g1"))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(call("turn", f"t{n}")) for n in range(3)]
    tasks.append(asyncio.create_task(call("greeting", "g2")))
    while gate.stats.waiting_turns + gate.stats.waiting_greetings < 5:
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *tasks)
    assert served == ["t0", "t1", "t2", "g1", "g2"]
    stats = gate.stats
    assert (stats.in_flight, stats.waiting_turns, stats.waited) == (0, 0, 5)


async def test_gate_refuses_turns_past_max_wait_and_max_waiting() -> None:
    gate = BotGate(1, max_waiting=2, max_wait=0.05)
    release = asyncio.Event()
    holder = asyncio.Event()

    async def hold() -> None:
        async with gate.turn():
            holder.set()
            await release.wait()

    async def turn() -> str:
        try:
            async with gate.turn():
                return "served"
        except BotOverloaded:
            return "overloaded"

    first = asyncio.create_task(hold())
    await holder.wait()
    waiting = [asyncio.create_task(turn()) for _ in range(2)]
    await asyncio.sleep(0)
    assert await turn() == "overloaded"  # a third waiter is refused at once
    assert gate.stats.shed == 1
    assert await asyncio.gather(*waiting) == ["overloaded", "overloaded"]  # waited too long
    assert gate.stats.expired == 2
    release.set()
    await first
    assert await turn() == "served"  # the slot was passed on, not lost
    assert gate.stats.in_flight == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    gate = BotGate(1, max_wait=30)
    async with gate.turn():
        waiter = asyncio.create_task(gate.turn().__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert gate.stats.in_flight == 0 and gate.stats.waiting_turns == 0
    async with gate.turn():
        assert gate.stats.in_flight == 1
