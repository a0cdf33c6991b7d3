"""Turn latency through the hub vs straight against Rasa, in one run.

Starts the real stack (action server, Rasa with the trained model, and the hub as its
own process on a temporary SQLite database), then drives N concurrent conversations
twice per round: over the hub's web chat WebSocket, and straight at Rasa's REST
webhook. Rounds alternate so machine noise hits both sides alike. Reports p50/p95 per
side and the ratio hub/Rasa (goal at 10 conversations: hub p95 <= 1.2 x Rasa p95).

    .venv/bin/python bench/turn_latency.py [--conversations 10] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import SCRIPT, hub_env, pct, wait_healthy  # noqa: E402

from hotline.config import load_settings  # noqa: E402
from hotline.supervisor import rasa_children, wait_ready  # noqa: E402
from hotline.training import model_path  # noqa: E402
from tests.chat import ChatClient  # noqa: E402


async def via_hub(base: str) -> list[float]:
    client = ChatClient(base, "zh")
    await client.connect()
    out = []
    for text in SCRIPT:
        t0 = time.perf_counter()
        await client.say(text)
        out.append((time.perf_counter() - t0) * 1000)
    await client.close()
    return out


async def via_rasa(http: aiohttp.ClientSession, rasa_url: str) -> list[float]:
    sender = str(uuid.uuid4())
    out = []
    for text in SCRIPT:
        t0 = time.perf_counter()
        async with http.post(
            f"{rasa_url}/webhooks/rest/webhook",
            json={"sender": sender, "message": text, "metadata": {"lang": "zh"}},
        ) as resp:
            await resp.json()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(conversations: int, rounds: int) -> dict[str, object]:
    var = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    env = hub_env(var)
    settings = load_settings(env)
    model = model_path(settings)
    if not model.exists():
        raise SystemExit(f"no model at {model}: run `make setup` first")
    (var / "log").mkdir()
    children = rasa_children(settings, model, var / "log")
    hub = None
    try:
        for child in children:
            child.start()
        await wait_ready(children)
        hub = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [str(ROOT / ".venv/bin/hotline"), "run", "--no-rasa"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = settings.public_origin
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            await via_rasa(http, settings.rasa_url)  # warm both paths once
            await via_hub(base)
            hub_samples: list[float] = []
            rasa_samples: list[float] = []
            for _ in range(rounds):
                for results in await asyncio.gather(
                    *(via_rasa(http, settings.rasa_url) for _ in range(conversations))
                ):
                    rasa_samples += results
                for results in await asyncio.gather(*(via_hub(base) for _ in range(conversations))):
                    hub_samples += results
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(10)
        for child in reversed(children):
            child.stop()
    return {
        "conversations": conversations,
        "turns_per_side": len(hub_samples),
        "rasa_p50_ms": round(pct(rasa_samples, 0.5), 1),
        "rasa_p95_ms": round(pct(rasa_samples, 0.95), 1),
        "hub_p50_ms": round(pct(hub_samples, 0.5), 1),
        "hub_p95_ms": round(pct(hub_samples, 0.95), 1),
        "p95_ratio": round(pct(hub_samples, 0.95) / pct(rasa_samples, 0.95), 3),
        "p50_ratio": round(pct(hub_samples, 0.5) / pct(rasa_samples, 0.5), 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.conversations, args.rounds))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>16}: {value}")
    print("goal: hub p95 <= 1.2 x rasa p95 ->", "MET" if result["p95_ratio"] <= 1.2 else "MISSED")


if __name__ == "__main__":
    main()
