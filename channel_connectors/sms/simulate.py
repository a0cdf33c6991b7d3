"""``hotline simulate sms``: a citizen's phone on Kannel's fake SMSC.

The SMS goes into the handset network (embedded Kannel's fake SMSC link), through
bearerbox and smsbox to the hub, and the replies come back the same way. Each reply is
printed as one JSON line; the exit code is 0 when at least one came within ``--wait``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from channel_connectors.sms.connector import BadRequest, normalize_number
from channel_connectors.sms.handset import HandsetClient
from channel_connectors.sms.settings import load
from hotline.config import ConfigError, Settings

HELP = "send an SMS as a citizen through Kannel and print the replies"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="sender", required=True, help="the citizen's number")
    parser.add_argument("--text", required=True, help="what the citizen writes")
    parser.add_argument("--to", default=None, help="the hotline's number (HOTLINE_SMS_SENDER)")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for replies")
    parser.add_argument(
        "--quiet", type=float, default=3.0, help="stop this many seconds after the last reply"
    )
    parser.add_argument("--socket", type=Path, default=None, help="the handset network socket")


async def run(args: argparse.Namespace, core: Settings) -> int:
    try:
        sms = load(core.channel_sections.get("sms", {}), core)
        number = normalize_number(args.sender)
    except (ConfigError, BadRequest) as exc:
        print(f"simulate sms: {exc}", file=sys.stderr)
        return 2
    path: Path = args.socket or sms.handset_socket
    replies = 0
    phone = HandsetClient(path)
    try:
        await phone.connect()
    except OSError:
        print(
            f"simulate sms: no handset network at {path}: is the hub running with embedded "
            "Kannel and no SMPP link (HOTLINE_CHANNELS=...,sms)?",
            file=sys.stderr,
        )
        return 1
    try:
        await phone.subscribe(number)
        await phone.send(number, args.text, to=args.to or sms.sender)
        async for event in phone.messages(args.wait, args.quiet):
            line = {"channel": "sms", "text": event["text"]}
            print(json.dumps(line, ensure_ascii=False), flush=True)
            replies += 1
    finally:
        await phone.close()
    return 0 if replies else 1
