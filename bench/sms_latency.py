"""SMS turn latency against the web chat turn, in one run on the same hub.

SMS: from the inbound SMS being accepted (stored) by the hub to the turn's last reply
handed to Kannel (``sendsms`` answered), measured inside the hub; also the citizen's
view: from the handset injecting the SMS into the fake SMSC to the turn's last reply
arriving back through bearerbox. Web chat: a message sent on /ws/chat to the end of its
turn (``typing off``), the same measure ``bench/turn_latency.py`` uses. Conversations
alternate between the channels so machine noise hits both alike.

    .venv/bin/python bench/sms_latency.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from typing import Any

from common import SCRIPT, pct
from sms_stack import machine, stack

from channel_connectors.sms.handset import HandsetClient
from hotline.appkeys import HUB
from tests.chat import ChatClient


async def run(rounds: int) -> dict[str, Any]:
    async with stack(rate_limit=1000) as s:
        channel = s.channel
        inbox = channel._inbox
        kannel = channel._kannel
        assert kannel is not None
        accepted_at: dict[str, float] = {}
        handed_at: dict[str, float] = defaultdict(float)
        handed: dict[str, int] = defaultdict(int)
        accept, send = inbox.accept, kannel.send

        async def timed_accept(inbound: Any) -> Any:
            result = await accept(inbound)
            accepted_at[inbound.conversation_id] = time.perf_counter()
            return result

        async def timed_send(to: str, text: str, dlr_url: str | None = None) -> str:
            answer = await send(to, text, dlr_url)
            handed_at[to] = time.perf_counter()
            handed[to] += 1
            return answer

        inbox.accept = timed_accept  # type: ignore[method-assign]
        kannel.send = timed_send  # type: ignore[method-assign]
        base = s.settings.public_origin
        sms_hub: list[float] = []
        sms_e2e: list[float] = []
        web: list[float] = []
        received: dict[str, int] = defaultdict(int)
        async with HandsetClient(s.sms.handset_socket) as phone:
            for r in range(rounds + 1):  # round 0 warms both paths
                number = f"1390000{r:04d}"
                await phone.subscribe(number)
                chat = ChatClient(base, "zh")
                await chat.connect()
                for text in SCRIPT:
                    t0 = time.perf_counter()
                    await chat.say(text)
                    if r:
                        web.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    await phone.send(number, text)
                    await phone.receive(30)
                    received[number] += 1
                    await s.app[HUB].drain()
                    while received[number] < handed[number]:  # the rest of the turn's SMS
                        await phone.receive(30)
                        received[number] += 1
                    conversation = max(accepted_at, key=lambda c: accepted_at[c])
                    if r:
                        sms_e2e.append((time.perf_counter() - t0) * 1000)
                        sms_hub.append((handed_at[number] - accepted_at[conversation]) * 1000)
                await chat.close()
    return {
        "machine": machine(),
        "turns_per_side": len(web),
        "web_p50_ms": round(pct(web, 0.5), 1),
        "web_p95_ms": round(pct(web, 0.95), 1),
        "sms_hub_p50_ms": round(pct(sms_hub, 0.5), 1),
        "sms_hub_p95_ms": round(pct(sms_hub, 0.95), 1),
        "sms_e2e_p50_ms": round(pct(sms_e2e, 0.5), 1),
        "sms_e2e_p95_ms": round(pct(sms_e2e, 0.95), 1),
        "ratio_p50_sms_hub_over_web": round(pct(sms_hub, 0.5) / pct(web, 0.5), 2),
        "ratio_p95_sms_hub_over_web": round(pct(sms_hub, 0.95) / pct(web, 0.95), 2),
        "ratio_p50_sms_e2e_over_web": round(pct(sms_e2e, 0.5) / pct(web, 0.5), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
