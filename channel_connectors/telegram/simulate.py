"""``hotline simulate telegram``: a Telegram user on a local Bot API server.

Telegram's apps cannot be driven from here, so this plays the Telegram side of a local
Bot API double (``python -m tests.telegram_api``, see README.md): the user's message
becomes an update that the double delivers to the hub the way the channel is set up
(POSTed to its webhook, or handed out by ``getUpdates``), and the bot's replies are what
the hub sent back through ``sendMessage``. Each reply is one JSON line; the exit code
is 0 when at least one came within ``--wait``, else 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from channel_connectors.telegram.settings import load
from hotline.config import ConfigError, Settings

HELP = "write to the bot as a Telegram user (through a local Bot API server)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", type=int, required=True, help="the Telegram user id")
    parser.add_argument("--text", required=True, help="what the user writes")
    parser.add_argument("--lang", default="zh-hans", help="the user's language_code")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for replies")
    parser.add_argument(
        "--quiet", type=float, default=3.0, help="stop this many seconds after the last reply"
    )


async def run(args: argparse.Namespace, core: Settings) -> int:
    try:
        telegram = load(core.channel_sections.get("telegram", {}), core)
    except ConfigError as exc:
        print(f"simulate telegram: {exc}", file=sys.stderr)
        return 2
    if not telegram.local_api:
        print(
            "simulate telegram: HOTLINE_TELEGRAM_API_URL must point at a local Bot API double "
            "(.venv/bin/python -m tests.telegram_api), not at Telegram",
            file=sys.stderr,
        )
        return 2
    if not 0 < args.user < 2**52:
        print("simulate telegram: --user must be a positive id", file=sys.stderr)
        return 2
    base = f"{telegram.api_url}/_double/{telegram.token}"
    user = {"id": args.user, "language_code": args.lang}
    replies = 0
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/chats/{args.user}") as response:
                after = int((await response.json())["last"])
            async with http.post(f"{base}/send", json={"user": user, "text": args.text}) as sent:
                answer: dict[str, Any] = await sent.json()
            webhook = answer.get("status")
            if sent.status != 200 or (webhook is not None and webhook != 200):
                print(f"simulate telegram: not accepted: {json.dumps(answer)}", file=sys.stderr)
                return 1
            deadline = time.monotonic() + args.wait
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, args.quiet) if replies else left
                url = f"{base}/chats/{args.user}?after={after}&wait={wait:.1f}"
                async with http.get(url) as response:
                    found = (await response.json())["messages"]
                if not found:
                    if replies:
                        break
                    continue
                for message in found:
                    line: dict[str, Any] = {"channel": "telegram", "text": message["text"]}
                    if message["buttons"]:
                        line["buttons"] = [b["text"] for b in message["buttons"]]
                    print(json.dumps(line, ensure_ascii=False), flush=True)
                    after = max(after, int(message["seq"]))
                    replies += 1
    except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
        print(
            f"simulate telegram: no Bot API double at {telegram.api_url} ({type(exc).__name__}): "
            "start it with .venv/bin/python -m tests.telegram_api",
            file=sys.stderr,
        )
        return 1
    except asyncio.CancelledError:
        raise
    return 0 if replies else 1
