"""Case-status lookup timing: does a wrong PIN answer at a different speed than an unknown code?

If it did, timing would tell a prober which case codes exist (the answers themselves are
identical on purpose). This drives ``TicketService.lookup`` directly, no HTTP, on a real
database: SQLite, and PostgreSQL (a throwaway cluster, ``tests/conftest.py``'s) unless
``--no-postgres``.

Conditions, interleaved sample by sample in a random order so drift hits all alike:

* ``unknown``: a well-formed case code (correct Damm check digit) that no ticket has;
* ``wrong_pin``: an existing ticket's code with a wrong PIN;
* ``malformed`` (for reference only): a code with a wrong check digit. Anyone can compute
  the check digit, so this one may differ without telling anything.

Every sample starts from the same throttle state (no failures: the rows the previous
sample wrote are deleted outside the timed region) and uses a fresh conversation id, so
no sample is locked out and both conditions insert the same rows.

Reported: median, p10/p90 and mean per condition, the wrong_pin/unknown median ratio with
a bootstrap 95% interval of the median difference, and a two-sided Mann-Whitney U test.
``--concurrent N`` also runs bursts of N simultaneous lookups of one condition (how the
gap was first seen), for comparison.

    .venv/bin/python bench/lookup_timing.py [--samples 200] [--no-postgres]
                                            [--concurrent 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete  # noqa: E402

from hotline import casecode  # noqa: E402
from hotline.store.db import make_engine, migrate, sessionmaker  # noqa: E402
from hotline.store.models import LookupThrottle, TicketKind  # noqa: E402
from hotline.tickets import TICKET_FIELDS, LookupOutcome, TicketService  # noqa: E402
from hotline.vault import IdentityVault  # noqa: E402
from tests.conftest import PostgresCluster  # noqa: E402

CONDITIONS = ("unknown", "wrong_pin", "malformed")


def unknown_code(taken: set[str]) -> str:
    while True:
        code = casecode.new_code()
        if code not in taken:
            return code


def malformed_code() -> str:
    code = casecode.new_code()
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def wrong_pin(pin: str) -> str:
    while True:
        other = casecode.new_pin()
        if other != pin:
            return other


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of ``a`` and the two-sided p-value (normal approximation, tie-corrected)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u1 - n1 * n2 / 2) / sigma if sigma else 0.0
    return u1, math.erfc(abs(z) / math.sqrt(2))


def bootstrap_median_diff(
    a: list[float], b: list[float], rounds: int = 2000, seed: int = 12309
) -> tuple[float, float]:
    """95% interval of median(b) - median(a)."""
    rng = random.Random(seed)
    diffs = sorted(
        statistics.median(rng.choices(b, k=len(b))) - statistics.median(rng.choices(a, k=len(a)))
        for _ in range(rounds)
    )
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p10_ms": round(quantile(values, 0.10) * 1000, 2),
        "p90_ms": round(quantile(values, 0.90) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def ticket_fields(chars: int) -> dict[str, str]:
    """A small report, or every field at ``chars`` characters (the cap is 4,000)."""
    if not chars:
        return {"details": "lookup timing"}
    text = ("县财政局局长收受贿赂" * (chars // 10 + 1))[:chars]
    return {name: text for name in sorted(TICKET_FIELDS)}


async def measure(url: str, samples: int, concurrent: int, chars: int) -> dict[str, Any]:
    engine = make_engine(url)
    await migrate(engine)
    sessions = sessionmaker(engine)
    service = TicketService(sessions, IdentityVault(os.urandom(32)))
    case = await service.create(
        kind=TicketKind.REPORT,
        fields=ticket_fields(chars),
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
    taken = {case.case_code}

    async def reset() -> None:
        async with sessions() as session:
            await session.execute(delete(LookupThrottle))
            await session.commit()

    def attempt(condition: str) -> Callable[[], Awaitable[Any]]:
        conversation = "bench-" + uuid.uuid4().hex
        if condition == "unknown":
            code, pin = unknown_code(taken), casecode.new_pin()
        elif condition == "wrong_pin":
            code, pin = case.case_code, wrong_pin(case.pin)
        else:
            code, pin = malformed_code(), casecode.new_pin()
        return lambda: service.lookup(code, pin, conversation)

    try:
        # Warm up: connections, the hasher, SQLAlchemy's statement caches.
        for condition in CONDITIONS * 3:
            await attempt(condition)()
            await reset()
        times: dict[str, list[float]] = {c: [] for c in CONDITIONS}
        outcomes: dict[str, set[str]] = {c: set() for c in CONDITIONS}
        rng = random.Random(7)
        for _ in range(samples):
            order = list(CONDITIONS)
            rng.shuffle(order)
            for condition in order:
                call = attempt(condition)
                started = time.perf_counter()
                result = await call()
                times[condition].append(time.perf_counter() - started)
                outcomes[condition].add(f"{result.outcome.value}/{result.attempts_left}")
                await reset()
        unknown, wrong = times["unknown"], times["wrong_pin"]
        u, p = mann_whitney(unknown, wrong)
        lo, hi = bootstrap_median_diff(unknown, wrong)
        report: dict[str, Any] = {
            "samples": samples,
            "ticket_field_chars": chars,
            "conditions": {c: summary(v) for c, v in times.items()},
            "outcomes": {c: sorted(v) for c, v in outcomes.items()},
            "wrong_pin_vs_unknown": {
                "median_ratio": round(statistics.median(wrong) / statistics.median(unknown), 3),
                "median_diff_ms": round(
                    (statistics.median(wrong) - statistics.median(unknown)) * 1000, 2
                ),
                "median_diff_ci95_ms": [round(lo * 1000, 2), round(hi * 1000, 2)],
                "mann_whitney_u": u,
                "p_value": round(p, 4),
            },
        }
        if concurrent:
            report["concurrent"] = await bursts(service, attempt, reset, concurrent, samples)
        for outcome in report["outcomes"].values():
            assert outcome == [f"{LookupOutcome.NO_MATCH.value}/4"], report["outcomes"]
        return report
    finally:
        await engine.dispose()


async def bursts(
    service: TicketService,
    attempt: Callable[[str], Callable[[], Awaitable[Any]]],
    reset: Callable[[], Awaitable[None]],
    width: int,
    samples: int,
) -> dict[str, Any]:
    """Bursts of ``width`` simultaneous lookups of one condition.

    The wrong PINs of a burst all name one case code, so they queue for that code's
    throttle row (and after five failures are locked out); ``unknown`` uses a new code
    for each lookup and ``unknown_same`` one unknown code for the whole burst, which
    is the fair comparison.
    """
    times: dict[str, list[float]] = {"unknown": [], "unknown_same": [], "wrong_pin": []}
    rounds = max(1, samples // width)
    for i in range(rounds * 3):
        condition = ("unknown", "unknown_same", "wrong_pin")[i % 3]
        if condition == "unknown_same":
            code = unknown_code(set())
            calls = [
                same_code(service, code, casecode.new_pin(), "bench-" + uuid.uuid4().hex)
                for _ in range(width)
            ]
        else:
            calls = [attempt(condition) for _ in range(width)]

        async def timed(call: Callable[[], Awaitable[Any]]) -> float:
            started = time.perf_counter()
            await call()
            return time.perf_counter() - started

        times[condition].extend(await asyncio.gather(*(timed(c) for c in calls)))
        await reset()
    unknown, same, wrong = times["unknown"], times["unknown_same"], times["wrong_pin"]
    return {
        "width": width,
        "rounds": rounds,
        "conditions": {c: summary(v) for c, v in times.items()},
        "median_ratio": round(statistics.median(wrong) / statistics.median(unknown), 3),
        "p_value": round(mann_whitney(unknown, wrong)[1], 4),
        "median_ratio_same_code": round(statistics.median(wrong) / statistics.median(same), 3),
        "p_value_same_code": round(mann_whitney(same, wrong)[1], 4),
    }


def same_code(
    service: TicketService, code: str, pin: str, conversation: str
) -> Callable[[], Awaitable[Any]]:
    return lambda: service.lookup(code, pin, conversation)


def print_report(database: str, report: dict[str, Any]) -> None:
    print(
        f"\n{database}: {report['samples']} samples per condition, interleaved; ticket fields "
        f"of {report['ticket_field_chars'] or 'a few'} characters"
    )
    print(f"  {'condition':<10} {'median':>8} {'p10':>8} {'p90':>8} {'mean':>8}   outcome")
    for condition, s in report["conditions"].items():
        print(
            f"  {condition:<10} {s['median_ms']:>6.1f}ms {s['p10_ms']:>6.1f}ms "
            f"{s['p90_ms']:>6.1f}ms {s['mean_ms']:>6.1f}ms   {report['outcomes'][condition]}"
        )
    cmp = report["wrong_pin_vs_unknown"]
    print(
        f"  wrong_pin/unknown median ratio {cmp['median_ratio']:.3f}, difference "
        f"{cmp['median_diff_ms']:+.2f} ms (95% CI {cmp['median_diff_ci95_ms'][0]:+.2f} .. "
        f"{cmp['median_diff_ci95_ms'][1]:+.2f}), Mann-Whitney p = {cmp['p_value']:.4f}"
    )
    if "concurrent" in report:
        c = report["concurrent"]
        medians = {k: v["median_ms"] for k, v in c["conditions"].items()}
        print(
            f"  bursts of {c['width']} x {c['rounds']}: median unknown "
            f"{medians['unknown']:.1f} ms, unknown_same {medians['unknown_same']:.1f} ms, "
            f"wrong_pin {medians['wrong_pin']:.1f} ms"
        )
        print(
            f"    wrong_pin/unknown {c['median_ratio']:.3f} (p = {c['p_value']:.4f}); "
            f"wrong_pin/unknown_same {c['median_ratio_same_code']:.3f} "
            f"(p = {c['p_value_same_code']:.4f})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--concurrent", type=int, default=0, metavar="N")
    parser.add_argument(
        "--ticket-chars",
        type=int,
        default=0,
        metavar="N",
        help="fill every field of the looked-up ticket with N characters (0: a short report)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="lookup-bench-") as tmp:
        results["sqlite"] = await measure(
            f"sqlite+aiosqlite:///{tmp}/bench.db", args.samples, args.concurrent, args.ticket_chars
        )
    if not args.json:
        print(results["machine"])
        print_report("sqlite", results["sqlite"])
    if not args.no_postgres:
        cluster = PostgresCluster()
        cluster.start()
        try:
            results["postgresql"] = await measure(
                cluster.create_database(), args.samples, args.concurrent, args.ticket_chars
            )
        finally:
            cluster.stop()
        if not args.json:
            print_report("postgresql", results["postgresql"])
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
