"""What the chat and SMS benchmarks share: the hub's settings, the script, percentiles.

The benchmarks run as scripts (``python bench/x.py``), so this folder is on ``sys.path``
and they import it as ``common``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

# A realistic session: greeting, a question, a report started and answered, then cancel.
SCRIPT = [
    "你好",
    "举报以后多久会有答复？",
    "我要举报我们县财政局的局长受贿",
    "张三",
    "县财政局",
    "局长",
    "他收受开发商贿赂二十万元，帮对方拿到了工程",
    "去年三月",
    "跳过",
    "取消",
]


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def hub_env(var: Path, **extra: str) -> dict[str, str]:
    """``HOTLINE_*`` for a benchmark's own hub, Rasa and action server on free ports."""
    return {
        "HOTLINE_VAR_DIR": str(var),
        "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_ACTIONS_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_WS_MESSAGES_PER_MINUTE": "10000",
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_CHANNELS": "webchat",  # an SMS benchmark adds its own Kannel
        **extra,
    }


async def wait_healthy(http: aiohttp.ClientSession, base: str, tries: int = 150) -> None:
    """Until the hub's ``/healthz`` says all is well (a hub starting as a process)."""
    for _ in range(tries):
        try:
            async with http.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{base}/healthz never answered 200")


def machine() -> str:
    """The machine, as docs/benchmarks.md names it: cores (nproc), CPU model, Python."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    model = next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
        "unknown CPU",
    )
    return (
        f"{platform.machine()}, {os.cpu_count()} cores (nproc), {model}, "
        f"python {platform.python_version()}"
    )
