"""A group send (群发) of N messages through a real Kannel, throttled, with a hub SIGKILL.

Starts Kannel as the SMS channel embeds it (bearerbox + smsbox from its kannel.conf, the
fake SMSC link and the handset network on it, ``channel_connectors/sms/embedded.py``)
and the hub as its own process (``hotline run --no-rasa`` with the SMS channel, Kannel
external) on a fresh database. Creates a
template and one group of N numbers through the staff API, sends to it at once, kills
the hub with SIGKILL when ``--kill-at`` of the messages have reached the handsets,
starts it again on the same database and waits until every row is settled.

Reported: the configured rate and the rate the SMSC saw before the kill, after the
restart and in the busiest one-second window (each as a ratio of the configured
rate); messages per number at the handsets (every number must get exactly one: rows the
kill caught mid-hand-off are settled from Kannel's status and access log,
``campaigns/reconcile.py``); the rows' final states; how long the restart took.

    .venv/bin/python bench/sms_group_send.py [--messages 10000] [--rate 200]
        [--kill-at 0.4] [--db sqlite|postgresql] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channel_connectors.sms.embedded import KannelProcesses  # noqa: E402
from channel_connectors.sms.settings import load as load_sms  # noqa: E402
from hotline.config import load_settings  # noqa: E402
from tests.channels.kannel import SECRET as KANNEL_SECRET  # noqa: E402
from tests.channels.kannel import SENDSMS_PASSWORD, Kannel  # noqa: E402
from tests.channels.test_sms_campaigns import (  # noqa: E402
    ADMIN_PASSWORD,
    Handsets,
    HubProcess,
    hub_env,
    setup_send,
)
from tests.conftest import SECRET, PostgresCluster, free_port  # noqa: E402
from tests.staff import StaffClient  # noqa: E402


def rate_between(arrivals: list[float], start: float, end: float) -> float:
    n = bisect.bisect_right(arrivals, end) - bisect.bisect_left(arrivals, start)
    return n / (end - start) if end > start else 0.0


def busiest_second(arrivals: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


async def hub_send_times(db: str, send_id: str) -> list[float]:
    """When each message Kannel accepted was released by the pacer (its claim is made
    at the slot, right before the sendsms call), epoch seconds, in order."""
    from sqlalchemy import select

    from channel_connectors.sms.campaigns.models import SmsSendMessage
    from hotline.store.db import make_engine, sessionmaker

    engine = make_engine(db)
    try:
        async with sessionmaker(engine)() as session:
            rows = await session.scalars(
                select(SmsSendMessage.claimed_at).where(
                    SmsSendMessage.send_id == send_id, SmsSendMessage.sent_at.is_not(None)
                )
            )
            return sorted(t.timestamp() for t in rows)
    finally:
        await engine.dispose()


def per_second(arrivals: list[float]) -> list[int]:
    if not arrivals:
        return []
    counts = [0] * (int(arrivals[-1] - arrivals[0]) + 1)
    for t in arrivals:
        counts[int(t - arrivals[0])] += 1
    return counts


def median_second(arrivals: list[float]) -> float:
    """The median of the whole seconds' counts (the first and last are partial)."""
    counts = sorted(per_second(arrivals)[1:-1])
    return float(counts[len(counts) // 2]) if counts else 0.0


def steady(arrivals: list[float], skip: float = 1.0) -> float:
    """Messages per second over a phase, leaving out its first ``skip`` seconds (the
    scheduler's first batch, the restart's recovery) and the last message."""
    if len(arrivals) < 3:
        return 0.0
    start = arrivals[0] + skip
    return rate_between(arrivals, start, arrivals[-1])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-sms-"))
    cluster = None
    if args.db == "postgresql":
        cluster = PostgresCluster()
        cluster.start()
        db = cluster.create_database()
    else:
        db = f"sqlite+aiosqlite:///{tmp / 'hotline.db'}"
    core = replace(
        load_settings(
            {
                "HOTLINE_VAR_DIR": str(tmp / "var"),
                "HOTLINE_SECRET_KEY": SECRET.hex(),
                "HOTLINE_RASA_TOKEN": "bench-token-0123456789",
                "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
                "HOTLINE_ACTIONS_URL": f"http://127.0.0.1:{free_port()}",
                "HOTLINE_DATABASE_URL": db,
                "HOTLINE_HTTP_PORT": str(free_port()),
            }
        ),
        database_url=db,
    )
    # Kannel as the SMS channel runs it embedded (fake SMSC + handset network).
    sms = load_sms(
        {
            "kannel": "embedded",
            "admin_port": str(free_port()),
            "box_port": str(free_port()),
            "sendsms_port": str(free_port()),
            "fake_port": str(free_port()),
            "sendsms_password": SENDSMS_PASSWORD,
            "inbound_secret": KANNEL_SECRET,
            "admin_password": "admin-password-kannel",
        },
        core,
    )
    procs = KannelProcesses(sms, core.var_dir / "log")  # where sms.access_log is
    await procs.start()
    handsets = await Handsets(sms.handset_socket).start()
    hub = HubProcess(
        hub_env(core, Kannel(sms), tmp / "hub", rate=args.rate, inflight=args.inflight),
        tmp / "hub.log",
    )
    base = f"http://127.0.0.1:{core.http_port}"
    n = args.messages
    try:
        await hub.start()
        client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
        t_setup = time.monotonic()
        send = await setup_send(client, n)
        setup_seconds = time.monotonic() - t_setup
        await client.close()
        kill_at = int(n * args.kill_at)
        await handsets.wait_for(kill_at, timeout=n / args.rate * 3 + 60)
        await hub.kill()
        t_kill = time.monotonic()
        kill_wall = time.time()
        before = list(handsets.arrivals)
        await hub.start()
        t_ready = time.monotonic()
        client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
        settled = ("delivered", "failed")
        deadline = time.monotonic() + n / args.rate * 3 + 120
        while True:
            s = (await client.get(f"/api/sms/sends/{send['id']}"))["send"]
            p = s["progress"]
            if s["state"] == "done" and sum(p[k] for k in settled) == n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"send not settled: {p}")
            await asyncio.sleep(0.5)
        unknown: set[str] = set()
        offset = 0
        while True:
            page = await client.get(
                f"/api/sms/sends/{send['id']}?state=unknown&limit=1000&offset={offset}"
            )
            unknown |= {m["phone"] for m in page["messages"]}
            if len(page["messages"]) < 1000:
                break
            offset += 1000
        await client.close()
        sent_times = await hub_send_times(db, send["id"])
        await handsets.wait_for(p["delivered"], timeout=60)
        await handsets.quiet(2.0)  # anything still on its way would be a duplicate
        got = handsets.received
        after = [t for t in handsets.arrivals if t > t_kill]
        all_times = handsets.arrivals
        duplicates = {k: len(v) for k, v in got.items() if len(v) > 1}
        missing = n - len(got)
        first_phase = steady(before)
        second_phase = steady(after)
        busiest = busiest_second(all_times)
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "db": args.db,
            "messages": n,
            "rate_configured": args.rate,
            "inflight": args.inflight,
            "setup_seconds": round(setup_seconds, 1),
            "killed_after": len(before),
            "restart_seconds": round(t_ready - t_kill, 2),
            "smsc_rate_before_kill": round(first_phase, 1),
            "smsc_rate_after_restart": round(second_phase, 1),
            "smsc_median_second": median_second(all_times),
            "smsc_max_whole_second": max(per_second(all_times)[1:-1], default=0),
            "hub_rate_before_kill": round(steady([t for t in sent_times if t < kill_wall]), 1),
            "hub_rate_after_restart": round(steady([t for t in sent_times if t > kill_wall]), 1),
            "hub_busiest_second": busiest_second(sent_times),
            "hub_busiest_ratio": round(busiest_second(sent_times) / args.rate, 3),
            "busiest_second": busiest,
            "busiest_ratio": round(busiest / args.rate, 3),
            "total_seconds": round(all_times[-1] - all_times[0], 1) if all_times else 0,
            "numbers_with_one_sms": sum(1 for v in got.values() if len(v) == 1),
            "numbers_with_more": len(duplicates),
            "numbers_with_none": missing,
            "unknown_rows": len(unknown),
            "none_but_not_unknown": len(set(f"1390{i:07d}" for i in range(n)) - set(got) - unknown),
            "progress": p,
            "per_second": per_second(all_times),
        }
        return result
    finally:
        await hub.stop()
        await handsets.stop()
        procs.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    ok = (
        result["numbers_with_more"] == 0
        and result["numbers_with_none"] == 0
        and result["unknown_rows"] == 0
        and result["hub_busiest_ratio"] <= 1.05
    )
    print("exactly once, rate respected:", "yes" if ok else "NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
