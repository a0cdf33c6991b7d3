"""A burst of new chats: what one client (or many, behind a proxy) does to the hotline.

Starts the real stack once (action server, Rasa with the trained model), then for each
configuration a fresh hub as its own process on a temporary SQLite database, trusting
127.0.0.1 as a proxy so clients can be spread over simulated addresses with
X-Forwarded-For. Each run opens K chat connections over ``--open-seconds``; each one
says hello, then sends one message at a random moment of the next ``--send-seconds``
and waits for the end of that turn. Meanwhile /healthz is polled once a second.

Reported per run: upgrades refused (429), hellos refused, conversations greeted before
their message, turns answered by the bot, handed to a person (bot_unavailable or
bot_overloaded), turns that never ended, turn p50/p95, /healthz failures, and the hub's
peak RSS. ``before`` disables the limits by configuration
(HOTLINE_NEW_CONVERSATIONS_PER_ADDRESS=0, HOTLINE_RASA_CONCURRENCY=0); ``after`` uses
the defaults.

    .venv/bin/python bench/chat_burst.py [--connections 400] [--addresses 1,100]
        [--modes before,after] [--open-seconds 10] [--send-seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import pct, wait_healthy  # noqa: E402

from hotline.config import load_settings  # noqa: E402
from hotline.supervisor import rasa_children, wait_ready  # noqa: E402
from hotline.texts import say  # noqa: E402
from hotline.training import model_path  # noqa: E402
from tests.conftest import free_port  # noqa: E402

QUESTION = "举报以后多久会有答复？"
MODES = {
    "before": {"HOTLINE_NEW_CONVERSATIONS_PER_ADDRESS": "0", "HOTLINE_RASA_CONCURRENCY": "0"},
    "after": {},
}


@dataclass
class Tally:
    refused_upgrade: int = 0
    refused_hello: int = 0
    failed: int = 0  # connection errors other than a 429
    welcomed: int = 0
    greeted: int = 0
    answered: int = 0
    unavailable: int = 0
    overloaded: int = 0
    unfinished: int = 0
    turns_ms: list[float] = field(default_factory=list)
    health_polls: int = 0
    health_failures: int = 0


async def citizen(
    http: aiohttp.ClientSession,
    url: str,
    address: str,
    send_at: float,
    deadline: float,
    tally: Tally,
) -> None:
    headers = {"X-Forwarded-For": address}
    try:
        ws = await http.ws_connect(url, headers=headers, heartbeat=None)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 429:
            tally.refused_upgrade += 1
        else:
            tally.failed += 1
        return
    except (aiohttp.ClientError, OSError):
        tally.failed += 1
        return
    loop = asyncio.get_running_loop()
    try:
        await ws.send_json({"type": "hello", "lang": "zh"})
        frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def reader() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frames.put_nowait(json.loads(msg.data))

        reading = asyncio.create_task(reader())
        greeted = False
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                while True:
                    frame = await frames.get()
                    if frame["type"] == "welcome":
                        tally.welcomed += 1
                        break
                    if frame["type"] == "error":
                        if frame.get("code") == "too_many_conversations":
                            tally.refused_hello += 1
                        else:
                            tally.failed += 1
                        return
                # Until the moment to write: a greeting may come.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, send_at - loop.time())):
                        while True:
                            frame = await frames.get()
                            if frame["type"] == "message" and frame.get("from") == "bot":
                                greeted = True
                tally.greeted += greeted
                msg_id = str(uuid.uuid4())
                t0 = time.perf_counter()
                await ws.send_json({"type": "message", "id": msg_id, "text": QUESTION})
                acked = turn_on = False
                outcome = None
                while True:
                    frame = await frames.get()
                    kind = frame["type"]
                    if kind == "ack" and frame.get("id") == msg_id:
                        acked = True
                    elif kind == "typing" and acked and frame.get("on"):
                        turn_on = True
                    elif kind == "message" and turn_on:
                        text = frame.get("text")
                        if text == say("bot_overloaded", "zh"):
                            outcome = "overloaded"
                        elif text == say("bot_unavailable", "zh"):
                            outcome = "unavailable"
                        elif outcome is None and frame.get("from") == "bot":
                            outcome = "answered"
                    elif kind == "typing" and turn_on and not frame.get("on"):
                        break
                tally.turns_ms.append((time.perf_counter() - t0) * 1000)
                if outcome == "answered":
                    tally.answered += 1
                elif outcome == "overloaded":
                    tally.overloaded += 1
                elif outcome == "unavailable":
                    tally.unavailable += 1
                else:
                    tally.unfinished += 1
        except TimeoutError:
            tally.unfinished += 1
        finally:
            reading.cancel()
    finally:
        await ws.close()


async def poll_health(
    http: aiohttp.ClientSession, base: str, stop: asyncio.Event, t: Tally
) -> None:
    while not stop.is_set():
        t.health_polls += 1
        try:
            async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status != 200:
                    t.health_failures += 1
        except (TimeoutError, aiohttp.ClientError):
            t.health_failures += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_run(
    base_env: dict[str, str],
    mode: str,
    connections: int,
    addresses: int,
    open_seconds: float,
    send_seconds: float,
) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="hotline-burst-"))
    port = free_port()
    env = {
        **base_env,
        **MODES[mode],
        "HOTLINE_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'hotline.db'}",
        "HOTLINE_HTTP_PORT": str(port),
    }
    hub = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [str(ROOT / ".venv/bin/hotline"), "run", "--no-rasa"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    tally = Tally()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_healthy(http, base)
            rss_idle = peak_rss_mb(hub.pid)
            stop = asyncio.Event()
            health = asyncio.create_task(poll_health(http, base, stop, tally))
            loop = asyncio.get_running_loop()
            start = loop.time()
            end = start + open_seconds + send_seconds + 90
            rng = random.Random(7)
            url = f"ws://127.0.0.1:{port}/ws/chat"
            tasks = []
            for n in range(connections):
                at = start + open_seconds * n / connections
                await asyncio.sleep(max(0.0, at - loop.time()))
                address = f"198.51.{100 + (n % addresses) // 250}.{(n % addresses) % 250 + 1}"
                send_at = at + rng.uniform(0, send_seconds)
                tasks.append(asyncio.create_task(citizen(http, url, address, send_at, end, tally)))
            await asyncio.gather(*tasks)
            stop.set()
            await health
            rss_peak = peak_rss_mb(hub.pid)
            elapsed = loop.time() - start
    finally:
        hub.terminate()
        hub.wait(20)
    return {
        "mode": mode,
        "connections": connections,
        "addresses": addresses,
        "upgrades_refused_429": tally.refused_upgrade,
        "hellos_refused": tally.refused_hello,
        "connect_failed": tally.failed,
        "accepted": tally.welcomed,
        "greeted_before_writing": tally.greeted,
        "answered_by_bot": tally.answered,
        "handed_off_unavailable": tally.unavailable,
        "handed_off_overloaded": tally.overloaded,
        "turn_never_ended": tally.unfinished,
        "turn_p50_ms": round(pct(tally.turns_ms, 0.5)),
        "turn_p95_ms": round(pct(tally.turns_ms, 0.95)),
        "healthz_failed": f"{tally.health_failures}/{tally.health_polls}",
        "hub_rss_idle_mb": round(rss_idle),
        "hub_rss_peak_mb": round(rss_peak),
        "seconds": round(elapsed),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    var = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    base_env = {
        "HOTLINE_VAR_DIR": str(var),
        "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_ACTIONS_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_TRUSTED_PROXIES": "127.0.0.1",
        "HOTLINE_LOG_LEVEL": "ERROR",
        "HOTLINE_VOICE": "off",
        "HOTLINE_CHANNELS": "webchat",
    }
    settings = load_settings(base_env)
    model = model_path(settings)
    if not model.exists():
        raise SystemExit(f"no model at {model}: run `make setup` first")
    (var / "log").mkdir(exist_ok=True)
    children = rasa_children(settings, model, var / "log")
    results = []
    try:
        for child in children:
            child.start()
        await wait_ready(children)
        for addresses in args.addresses:
            for mode in args.modes:
                result = await one_run(
                    base_env,
                    mode,
                    args.connections,
                    addresses,
                    args.open_seconds,
                    args.send_seconds,
                )
                results.append(result)
                if not args.json:
                    print(json.dumps(result), flush=True)
                await asyncio.sleep(5)  # let Rasa finish what the last hub left it
    finally:
        for child in reversed(children):
            child.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--addresses", default="1,100", help="comma-separated; one run each")
    parser.add_argument("--modes", default="before,after")
    parser.add_argument("--open-seconds", type=float, default=10)
    parser.add_argument("--send-seconds", type=float, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.addresses = [int(a) for a in args.addresses.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    results = asyncio.run(run(args))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "runs": results}))
        return
    print("machine:", machine)
    keys = list(results[0]) if results else []
    for key in keys:
        print(f"{key:>24}: " + "  ".join(f"{r[key]!s:>10}" for r in results))


if __name__ == "__main__":
    main()
