"""Concurrent phone callers through the real IVR: how many before calls fail.

Starts the embedded Asterisk 22 from a copy of the provisioned root (``--root``, default
``/tmp/ast-bench``: Asterisk's configuration is rendered into the root it runs from, so
two runs must not share one) and the hub in this process (``create_app`` on a temporary
SQLite database, voice on). Creates one case per caller, places one warm-up call (so the
prompts are synthesized and cached before anything is measured), then ramps N concurrent
SIPp callers: N = 5, 10, 20, 40, ... up to ``--max``. Each caller takes the key-driven
case-status path of ``tests/test_voice.py``: 2 (English), 3 (case status), the 12-digit
case code and #, the 6-digit PIN and #, then stays 6 s to hear the answer and hangs up.
Keys are SIP INFO, one SIPp process per N places all N calls within one second
(``-r N -rp 1000 -l N -m N``), each caller reading its number, code and PIN from an
injection file.

A call failed if SIPp did not reach the end of the scenario for it (a log line written
by the scenario's last action) or its CDR (``call_record``) lacks
``("case_status", "found")``. The ramp stops at the first N with a failure (after one
probe halfway between the last clean N and that one).

CPU is utime+stime from ``/proc/<pid>/stat`` over the busy period (SIPp start to SIPp
exit) for the hub (this process: the IVR, ARI client, SQLite, argon2 PIN checks) and for
Asterisk; SIPp's own CPU (the load generator, on the same cores) is shown apart. Peak RSS
is ``VmHWM`` after resetting it (``clear_refs``) at the start of each level. ``lag``
columns come from the CDR step timestamps: how much later than the caller's scripted key
timing the IVR logged the menu choice and the case-status answer (the latter includes
the argon2 PIN check), so they grow when the hub or Asterisk falls behind. ``late``
counts calls whose case-status answer came more than the caller's 6 s of listening after
the PIN's #: the caller had hung up before it began (the lookup still completes and the
CDR says "found", so such a call is not "failed" by the rule above). ``hub peak`` and
``ast peak`` are the busiest 1 s window (100% = one core).

``--postgres`` runs the hub on a throwaway PostgreSQL cluster (``tests/conftest.py``'s)
instead of SQLite, for comparison.

    .venv/bin/python bench/voice_load.py [--max 80] [--root /tmp/ast-bench] [--postgres]
                                         [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestServer  # noqa: E402
from sqlalchemy import select  # noqa: E402

from hotline.appkeys import HUB  # noqa: E402
from hotline.config import Settings, load_settings  # noqa: E402
from hotline.store.db import make_engine, sessionmaker  # noqa: E402
from hotline.store.models import CallRecord, TicketKind  # noqa: E402
from hotline.web import create_app  # noqa: E402
from tests.conftest import PostgresCluster, free_port  # noqa: E402
from tests.voice import free_udp_port, keyed, scenario  # noqa: E402
from voice_ivr.asterisk import EmbeddedAsterisk  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
LANGUAGE_AT, MENU_AT = 2.5, 4.0  # seconds after the answer the script presses 2, then 3
CODE_KEYS = 12 + 1 + 6 + 1  # code, #, PIN, #
KEY_GAP = 0.35
STAY = 6.0  # the caller listens this long after the PIN's #


# ------------------------------------------------------------------ /proc readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is already counted in user
    idle = values[3] + values[4]  # idle + iowait
    return (total - idle) / TICKS, total / TICKS


def reset_peak_rss(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(pid: int, which: str = "VmHWM") -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(which + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def code_version() -> str:
    """The commit measured, ``+local`` if the hub's or the IVR's files differ from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "hotline", "voice_ivr", "asterisk"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (head or "unknown") + ("+local" if changed else "")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def sample_cpu(pids: list[int], peaks: list[float], stop: asyncio.Event) -> None:
    """Keeps in ``peaks`` each pid's highest CPU use over any 1 s window (5 samples/s)."""
    history: list[tuple[float, list[float]]] = []
    while not stop.is_set():
        history.append((time.monotonic(), [cpu_seconds(pid) for pid in pids]))
        if len(history) > 5:
            (t0, c0), (t1, c1) = history[-6], history[-1]
            for i in range(len(pids)):
                peaks[i] = max(peaks[i], (c1[i] - c0[i]) / (t1 - t0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, round(q * len(ordered)) - 1)]


# ------------------------------------------------------------------------ the run


@dataclass
class Level:
    n: int
    wall: float = 0.0
    sipp_done: int = 0
    found: int = 0
    failed: int = 0
    hub_cpu: float = 0.0
    asterisk_cpu: float = 0.0
    sipp_cpu: float = 0.0
    other_cpu: float = 0.0  # the rest of the machine during the level (noise)
    hub_peak_1s: float = 0.0  # the busiest second, in CPU seconds per second
    asterisk_peak_1s: float = 0.0
    hub_rss: float = 0.0
    hub_rss_after: float = 0.0  # still resident when the level's calls are over
    asterisk_rss: float = 0.0
    answer_ms: list[float] = field(default_factory=list)
    menu_lag_ms: list[float] = field(default_factory=list)
    status_lag_ms: list[float] = field(default_factory=list)
    why: Counter[str] = field(default_factory=Counter)
    sipp_errors: str = ""
    warnings: Counter[str] = field(default_factory=Counter)
    rss_since_start: bool = False

    def row(self) -> dict[str, Any]:
        busy = self.wall or float("nan")
        return {
            "calls": self.n,
            "failed": self.failed,
            "sipp_completed": self.sipp_done,
            "cdr_found": self.found,
            "busy_s": round(self.wall, 1),
            "late": sum(lag > STAY * 1000 for lag in self.status_lag_ms),
            "hub_cpu_pct": round(100 * self.hub_cpu / busy, 1),
            "asterisk_cpu_pct": round(100 * self.asterisk_cpu / busy, 1),
            "hub_peak_1s_pct": round(100 * self.hub_peak_1s),
            "asterisk_peak_1s_pct": round(100 * self.asterisk_peak_1s),
            "sipp_cpu_pct": round(100 * self.sipp_cpu / busy, 1),
            "other_cpu_pct": round(100 * self.other_cpu / busy, 1),
            "hub_cpu_ms_per_call": round(1000 * self.hub_cpu / self.n),
            "asterisk_cpu_ms_per_call": round(1000 * self.asterisk_cpu / self.n),
            "rss_peak_since_start": self.rss_since_start,
            "hub_peak_rss_mb": round(self.hub_rss),
            "hub_rss_after_mb": round(self.hub_rss_after),
            "asterisk_peak_rss_mb": round(self.asterisk_rss),
            "answer_p50_ms": round(pct(self.answer_ms, 0.5)),
            "answer_p95_ms": round(pct(self.answer_ms, 0.95)),
            "menu_lag_p95_ms": round(pct(self.menu_lag_ms, 0.95)),
            "status_lag_p50_ms": round(pct(self.status_lag_ms, 0.5)),
            "status_lag_p95_ms": round(pct(self.status_lag_ms, 0.95)),
            "status_lag_max_ms": round(max(self.status_lag_ms, default=float("nan"))),
            "failures": dict(self.why),
            "hub_warnings": dict(self.warnings),
            "sipp_errors": self.sipp_errors,
        }


class WarningCounter(logging.Handler):
    """Counts the hub's warnings and errors by message, per level."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()[:80]}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {str(exc)[:100]})"
        self.seen[text] += 1


@dataclass(frozen=True)
class Case:
    code: str
    pin: str


def caller_scenario(settings: Settings) -> Path:
    """tests/voice.scenario() with the caller, code and PIN taken from injection fields.

    The last action logs ``ok <caller>``: SIPp got there only if every message of the
    call (INVITE, each INFO, BYE) was answered as the scenario expects.
    """
    code = [f"[field{1 + i}]" for i in range(12)]
    pin = [f"[field{13 + i}]" for i in range(6)]
    keys: list[tuple[int, str | Path]] = [
        (int(LANGUAGE_AT * 1000), "2"),
        (int((MENU_AT - LANGUAGE_AT) * 1000), "3"),
        *keyed(*code, "#", pause=int(KEY_GAP * 1000)),
        *keyed(*pin, "#", pause=int(KEY_GAP * 1000)),
        (int(STAY * 1000), "9"),  # stay to hear the answer; 9 is no menu choice
    ]
    return mark_completion(scenario("[field0]", keys, settings.sip_trunk_password, hangs_up=True))


def mark_completion(path: Path) -> Path:
    """Make the scenario at ``path`` log ``ok [field0]`` as its last action (in place).

    :func:`sipp_calls` counts a call as finished by that line: SIPp gets there only if
    every message of the call was answered as the scenario expects.
    """
    done = '  <nop><action><log message="ok [field0]"/></action></nop>\n</scenario>'
    path.write_text(path.read_text().replace("</scenario>", done))
    return path


async def run_sipp(
    settings: Settings, path: Path, callers: list[str], cases: list[Case]
) -> tuple[set[str], str]:
    """All callers at once from one SIPp; returns who finished and SIPp's error tail."""
    rows = [[caller, *case.code, *case.pin] for caller, case in zip(callers, cases, strict=True)]
    return await sipp_calls(settings, path, rows, name=str(len(callers)))


async def sipp_calls(
    settings: Settings,
    path: Path,
    rows: list[list[str]],
    *,
    name: str,
    media_port: int | None = None,
    timeout: str = "150s",
) -> tuple[set[str], str]:
    """One call per injection row (``[field0]`` is the caller), all within one second,
    from one SIPp run of the scenario at ``path`` (see :func:`mark_completion`).

    Returns the callers whose call reached the scenario's end, and SIPp's error tail
    ("" when it exited cleanly). ``media_port``: SIPp's ``-mp`` (the SDP's audio port,
    which pcap play also sends from); a free one if not given. ``name`` keeps the files
    of several runs in one scenario directory apart.
    """
    work = path.parent
    inf = work / f"callers-{name}.csv"
    lines = ["SEQUENTIAL"] + [";".join(row) for row in rows]
    inf.write_text("\n".join(lines) + "\n")
    log_file, err_file = work / f"ok-{name}.log", work / f"err-{name}.log"
    n = len(rows)
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{settings.sip_port}",
        "-sf",
        str(path),
        "-s",
        settings.ivr_number,
        "-inf",
        str(inf),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-mp",
        str(media_port or free_udp_port()),
        "-r",
        str(n),
        "-rp",
        "1000",
        "-l",
        str(n),
        "-m",
        str(n),
        "-recv_timeout",
        "30000",  # a call waiting 30 s for an answer to any request has failed
        "-timeout",
        timeout,
        "-nostdin",
        "-trace_logs",
        "-log_file",
        str(log_file),
        "-trace_err",
        "-error_file",
        str(err_file),
        cwd=work,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    done = set()
    if log_file.exists():
        done = {ln.split()[-1] for ln in log_file.read_text().splitlines() if " ok " in f" {ln} "}
    detail = err.decode(errors="replace").strip()[-300:]
    if err_file.exists():
        kinds = Counter(
            ln.split(":", 1)[-1].strip()[:90]
            for ln in err_file.read_text(errors="replace").splitlines()
            if "Aborting call" in ln or "failed" in ln.lower() or "timeout" in ln.lower()
        )
        detail = "; ".join(f"{k} x{v}" for k, v in kinds.most_common(3)) or detail
    return done, detail if proc.returncode != 0 else ""


async def finished_records(db_url: str, callers: list[str], wait: float) -> dict[str, CallRecord]:
    """The callers' CDRs once all are closed (or after ``wait`` seconds: what there is)."""
    engine = make_engine(db_url)
    deadline = time.monotonic() + wait
    try:
        while True:
            async with sessionmaker(engine)() as session:
                rows = (
                    (
                        await session.execute(
                            select(CallRecord).where(CallRecord.caller.in_(callers))
                        )
                    )
                    .scalars()
                    .all()
                )
            records = {r.caller: r for r in rows}
            closed = [r for r in rows if r.ended_at is not None]
            if len(closed) == len(callers) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def _at(record: CallRecord, step: str) -> dt.datetime | None:
    for s in record.ivr_path:
        if s["step"] == step:
            return dt.datetime.fromisoformat(s["at"])
    return None


async def run_level(
    n: int,
    settings: Settings,
    scenario_path: Path,
    cases: list[Case],
    asterisk_pid: int,
    warnings: WarningCounter,
) -> Level:
    level = Level(n)
    callers = [f"139{n:03d}{i:05d}" for i in range(n)]
    me = os.getpid()
    can_reset = reset_peak_rss(me) and reset_peak_rss(asterisk_pid)
    warnings.seen.clear()
    hub0, ast0, kids0 = cpu_seconds(me), cpu_seconds(asterisk_pid), children_cpu()
    busy0, _ = machine_busy()
    t0 = time.monotonic()
    peaks, stop = [0.0, 0.0], asyncio.Event()
    sampler = asyncio.create_task(sample_cpu([me, asterisk_pid], peaks, stop))
    done, level.sipp_errors = await run_sipp(settings, scenario_path, callers, cases[:n])
    level.wall = time.monotonic() - t0
    stop.set()
    await sampler
    level.hub_peak_1s, level.asterisk_peak_1s = peaks
    level.hub_cpu = cpu_seconds(me) - hub0
    level.asterisk_cpu = cpu_seconds(asterisk_pid) - ast0
    level.sipp_cpu = children_cpu() - kids0
    level.other_cpu = max(
        0.0, machine_busy()[0] - busy0 - level.hub_cpu - level.asterisk_cpu - level.sipp_cpu
    )
    # Without clear_refs (not root) the peak is the process's since it started.
    level.hub_rss, level.asterisk_rss = rss_mb(me), rss_mb(asterisk_pid)
    level.hub_rss_after = rss_mb(me, "VmRSS")
    level.rss_since_start = not can_reset
    records = await finished_records(settings.database_url, callers, wait=15.0)
    level.sipp_done = len(done & set(callers))
    for caller in callers:
        record = records.get(caller)
        ok_sipp = caller in done
        if record is None:
            why = "no CDR"
        else:
            path = [(s["step"], s.get("value")) for s in record.ivr_path]
            steps = [step for step, _ in path]
            if ("case_status", "found") in path:
                level.found += 1
                why = "" if ok_sipp else "SIPp failed (CDR ok)"
            elif "case_status" in steps:
                why = f"case_status {path[steps.index('case_status')][1]}"
            else:
                why = f"stopped after {steps[-1] if steps else 'nothing'} ({record.disposition})"
            answered = record.answered_at
            if answered is not None:
                level.answer_ms.append((answered - record.started_at).total_seconds() * 1000)
                menu, status = _at(record, "menu"), _at(record, "case_status")
                if menu is not None:
                    # ivr_path times are aware (UTC); answered_at is naive UTC in SQLite.
                    base = answered.replace(tzinfo=menu.tzinfo)
                    lag = (menu - base).total_seconds() - MENU_AT
                    level.menu_lag_ms.append(lag * 1000)
                    if status is not None:
                        lag = (status - menu).total_seconds() - CODE_KEYS * KEY_GAP
                        level.status_lag_ms.append(lag * 1000)
        if why:
            level.failed += 1
            level.why[why] += 1
    level.warnings = Counter(warnings.seen)
    return level


def ladder(cap: int) -> list[int]:
    out, n = [], 5
    while n < cap:
        out.append(n)
        n *= 2
    return [*out, cap]


def check_ready(root: Path) -> None:
    """Exit with a hint unless SIPp is installed and ``root`` is a provisioned root."""
    if shutil.which("sipp") is None:
        raise SystemExit("SIPp is missing: apt-get install sip-tester")
    if not (root / ".hotline-provisioned").exists():
        raise SystemExit(f"{root} is no provisioned Asterisk root: cp -a var/asterisk-root {root}")


@dataclass
class Stack:
    """What :func:`voice_stack` started: the settings, the hub's server, Asterisk's pid."""

    settings: Settings
    server: TestServer
    asterisk_pid: int


@contextlib.asynccontextmanager
async def voice_stack(root: Path, *, postgres: bool = False) -> AsyncIterator[Stack]:
    """The embedded Asterisk (from ``root``) and the hub in this process, voice on.

    The hub runs on SQLite in a temporary directory, or on a throwaway PostgreSQL
    cluster with ``postgres``; ports (ARI, SIP, HTTP, an RTP range of 1000) are free
    ones, so the stack can run beside another.
    """
    var = Path(tempfile.mkdtemp(prefix="hotline-voice-bench-"))
    (var / "log").mkdir()
    cluster = PostgresCluster() if postgres else None
    if cluster is not None:
        cluster.start()
    database_url = (
        cluster.create_database()
        if cluster is not None
        else f"sqlite+aiosqlite:///{var / 'hotline.db'}"
    )
    env = {
        "HOTLINE_VAR_DIR": str(var),
        "HOTLINE_RASA_TOKEN": "bench-" + uuid.uuid4().hex,
        "HOTLINE_SECRET_KEY": os.urandom(32).hex(),
        "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_ACTIONS_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_ARI_PASSWORD": "ari-bench-" + uuid.uuid4().hex[:16],
        "HOTLINE_SIP_TRUNK_PASSWORD": "trunk-bench-" + uuid.uuid4().hex[:16],
        "HOTLINE_CHANNELS": "webchat",
    }
    settings = replace(
        load_settings(env),
        asterisk_root=root,
        ari_url=f"http://127.0.0.1:{free_port()}",
        sip_port=free_udp_port(),
        rtp_start=random.randrange(30000, 60000, 1000),
        voice_enabled=True,
        database_url=database_url,
    )
    try:
        box = EmbeddedAsterisk(settings)
        await box.start()
        try:
            assert box._proc is not None
            asterisk_pid = box._proc.pid  # chroot execs asterisk: the same process
            server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
            try:
                await server.start_server()
                yield Stack(settings, server, asterisk_pid)
            finally:
                await server.close()
        finally:
            box.stop()
    finally:
        if cluster is not None:
            cluster.stop()


async def create_cases(server: TestServer, n: int) -> list[Case]:
    """``n`` English reports filed on the web, to be checked by phone."""
    tickets = server.app[HUB].tickets
    cases = []
    for _ in range(n):
        new = await tickets.create(
            kind=TicketKind.REPORT,
            fields={"details": "benchmark case"},
            identity=None,
            conversation_id=None,
            channel="webchat",
            language="en",
        )
        cases.append(Case(new.case_code, new.pin))
    return cases


async def run(cap: int, root: Path, quiet: bool, postgres: bool) -> dict[str, Any]:
    check_ready(root)
    code = code_version()  # the tree may change under a long run: checked again at the end
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    logging.getLogger().setLevel(logging.WARNING)

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    levels: list[Level] = []
    try:
        async with voice_stack(root, postgres=postgres) as stack:
            settings, asterisk_pid = stack.settings, stack.asterisk_pid
            t0 = time.perf_counter()
            cases = await create_cases(stack.server, cap)
            say(f"{cap} cases created in {time.perf_counter() - t0:.1f} s")
            path = caller_scenario(settings)
            warm = await run_level(1, settings, path, cases, asterisk_pid, warnings)
            say(f"warm-up call: failed={warm.failed} {dict(warm.why)}")
            if warm.failed:
                raise SystemExit(f"the warm-up call failed: {warm.row()}")
            plan = ladder(cap)
            good = 0
            probed = False
            while plan:
                n = plan.pop(0)
                level = await run_level(n, settings, path, cases, asterisk_pid, warnings)
                levels.append(level)
                row = level.row()
                say(
                    f"N={n}: failed {level.failed}, hub {row['hub_cpu_pct']}% "
                    f"asterisk {row['asterisk_cpu_pct']}% sipp {row['sipp_cpu_pct']}% "
                    f"other {row['other_cpu_pct']}%, status lag p95 {row['status_lag_p95_ms']} ms"
                )
                if level.failed:
                    mid = (good + n) // 2
                    if not probed and good and mid not in (good, n):
                        plan, probed = [mid], True
                        continue
                    break
                good = max(good, n)
                await asyncio.sleep(2)  # let Asterisk settle between levels
    finally:
        logging.getLogger().removeHandler(warnings)
    clean = [lv for lv in levels if not lv.failed]
    best = max(clean, key=lambda lv: lv.n) if clean else None
    timely = [lv.n for lv in clean if not lv.row()["late"]]
    return {
        "levels": [lv.row() for lv in levels],
        "largest_clean_n": best.n if best else 0,
        "at_largest": best.row() if best else None,
        "largest_clean_n_nobody_late": max(timely, default=0),
        "cap": cap,
        "code": code if code_version() == code else f"{code}, then {code_version()}",
        "database": "postgresql" if postgres else "sqlite",
        "loadavg_after": loadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}",
        "date": dt.date.today().isoformat(),
    }


COLUMNS = [
    ("calls", "N"),
    ("failed", "fail"),
    ("late", "late"),
    ("busy_s", "busy s"),
    ("hub_cpu_pct", "hub %"),
    ("hub_peak_1s_pct", "hub peak %"),
    ("asterisk_cpu_pct", "ast %"),
    ("asterisk_peak_1s_pct", "ast peak %"),
    ("sipp_cpu_pct", "sipp %"),
    ("other_cpu_pct", "other %"),
    ("hub_cpu_ms_per_call", "hub ms/call"),
    ("asterisk_cpu_ms_per_call", "ast ms/call"),
    ("hub_peak_rss_mb", "hub MB"),
    ("hub_rss_after_mb", "hub MB after"),
    ("asterisk_peak_rss_mb", "ast MB"),
    ("answer_p95_ms", "answer p95"),
    ("menu_lag_p95_ms", "menu lag p95"),
    ("status_lag_p50_ms", "status lag p50"),
    ("status_lag_p95_ms", "status lag p95"),
    ("status_lag_max_ms", "status lag max"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max", type=int, default=80, help="most concurrent callers to try")
    parser.add_argument("--root", type=Path, default=Path("/tmp/ast-bench"))
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="a throwaway PostgreSQL cluster (as the tests start one) instead of SQLite",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.max, args.root, args.json, args.postgres))
    if args.json:
        print(json.dumps(result))
        return
    print(" | ".join(title for _, title in COLUMNS))
    for row in result["levels"]:
        print(" | ".join(str(row[key]) for key, _ in COLUMNS))
    for row in result["levels"]:
        if row["failed"] or row["hub_warnings"] or row["sipp_errors"]:
            print(f"N={row['calls']}: failures {row['failures']}")
            print(f"  hub warnings {row['hub_warnings']}")
            print(f"  sipp: {row['sipp_errors']}")
    print(
        f"{result['database']}: largest N with 0 failed calls: {result['largest_clean_n']} "
        f"(cap {result['cap']}); code {result['code']}; "
        f"{result['machine']}; load average after {' '.join(result['loadavg_after'])}"
    )
    timely = result["largest_clean_n_nobody_late"]
    print(f"largest N also with no caller gone before the answer: {timely}")
    if result["at_largest"] is not None:
        best = result["at_largest"]
        print(
            f"at that N: hub {best['hub_cpu_pct']}% of one core, "
            f"asterisk {best['asterisk_cpu_pct']}%, peak RSS hub {best['hub_peak_rss_mb']} MB, "
            f"asterisk {best['asterisk_peak_rss_mb']} MB"
        )


if __name__ == "__main__":
    main()
