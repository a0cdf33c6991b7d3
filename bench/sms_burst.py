"""A burst of inbound SMS through real Kannel: none lost, none answered twice.

``--count`` SMS (default 1,000) from ``--numbers`` citizens (default 1,000: one each) are
injected into the fake SMSC as fast as the link takes them. They travel bearerbox →
smsbox → the hub's webhook → storage → Rasa → replies → sendsms → bearerbox → the
handsets. Checked at the end: every SMS stored exactly once and answered (handled), every
conversation's citizen turns each answered by exactly one bot turn, and every reply the
hub handed to Kannel arrived at a handset. Reported: the time to store all of them
(intake throughput) and to the last reply (end-to-end throughput).

    .venv/bin/python bench/sms_burst.py [--count 1000] [--numbers 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from sms_stack import machine, stack
from sqlalchemy import case, func, select

from channel_connectors.sms import store
from channel_connectors.sms.handset import HandsetClient
from hotline.appkeys import HUB, SESSIONS
from hotline.store.models import AuthorKind, Contact, Conversation, Message


async def counts(sessions: Any) -> tuple[int, int, int]:
    async with sessions() as session:
        citizen = (
            await session.execute(
                select(func.count())
                .select_from(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Conversation.channel == "sms", Message.author == AuthorKind.CITIZEN.value)
            )
        ).scalar_one()
        handled = (
            await session.execute(
                select(func.count())
                .select_from(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(
                    Conversation.channel == "sms",
                    Message.author == AuthorKind.CITIZEN.value,
                    Message.handled.is_(True),
                )
            )
        ).scalar_one()
        sent = (
            await session.execute(
                select(func.count())
                .select_from(store.sms_outbound)
                .where(store.sms_outbound.c.status == "sent")
            )
        ).scalar_one()
    return int(citizen), int(handled), int(sent)


async def run(count: int, numbers: int) -> dict[str, Any]:
    async with stack(rate_limit=10_000) as s:
        sessions = s.app[SESSIONS]
        inbox = s.channel._inbox
        accept = inbox.accept
        accepted = 0
        last_accept = 0.0

        async def counted_accept(inbound: Any) -> Any:
            nonlocal accepted, last_accept
            result = await accept(inbound)
            if not result.duplicate:
                accepted += 1
                last_accept = time.perf_counter()
            return result

        inbox.accept = counted_accept  # type: ignore[method-assign]
        received = 0
        arrived = asyncio.Event()
        async with HandsetClient(s.sms.handset_socket) as phone:
            await phone.subscribe("*")

            async def listen() -> None:
                nonlocal received
                while True:
                    await phone.receive(3600)
                    received += 1
                    arrived.set()

            listener = asyncio.create_task(listen())
            t0 = time.perf_counter()
            for i in range(count):
                await phone.send(f"1380{i % numbers:07d}", "你好" if i % 2 else "hello")
            injected = time.perf_counter() - t0
            checked = 0.0
            while True:  # until everything is stored, answered and has arrived
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), 60)
                except TimeoutError:
                    break  # nothing moved for a minute: report what got through
                if time.perf_counter() - checked < 1.0 and received < count:
                    continue  # count rows at most once a second while replies pour in
                checked = time.perf_counter()
                citizen, handled, sent = await counts(sessions)
                if citizen >= count and handled >= count:
                    await s.app[HUB].drain()
                    citizen, handled, sent = await counts(sessions)
                    if received >= sent:
                        break
            done = time.perf_counter() - t0
            citizen, handled, sent = await counts(sessions)
            stored_at = last_accept - t0 if accepted >= count else None
            listener.cancel()
        async with sessions() as session:
            per_conversation = (
                await session.execute(
                    select(
                        Conversation.id,
                        func.sum(case((Message.author == AuthorKind.CITIZEN.value, 1), else_=0)),
                        func.sum(case((Message.author != AuthorKind.CITIZEN.value, 1), else_=0)),
                    )
                    .join(Message, Message.conversation_id == Conversation.id)
                    .join(Contact, Contact.id == Conversation.contact_id)
                    .where(Conversation.channel == "sms")
                    .group_by(Conversation.id)
                )
            ).all()
            duplicates = (
                await session.execute(
                    select(func.count()).select_from(
                        select(Message.conversation_id, Message.client_id)
                        .where(Message.author == AuthorKind.CITIZEN.value)
                        .group_by(Message.conversation_id, Message.client_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
            ).scalar_one()
    # "hello"/"你好" each get exactly one reply (the bot's greeting).
    shapes = Counter((int(c), int(b)) for _, c, b in per_conversation)
    answered_twice = sum(1 for _, c, b in per_conversation if b > c)
    unanswered = sum(1 for _, c, b in per_conversation if b < c)
    return {
        "machine": machine(),
        "sms": count,
        "numbers": numbers,
        "stored": citizen,
        "lost": count - citizen,
        "handled": handled,
        "duplicates_stored": int(duplicates),
        "conversations_answered_twice": answered_twice,
        "conversations_unanswered": unanswered,
        "citizen_bot_messages_per_conversation": {f"{c}:{b}": n for (c, b), n in shapes.items()},
        "replies_handed_to_kannel": sent,
        "replies_received_by_handsets": received,
        "inject_seconds": round(injected, 2),
        "all_stored_seconds": round(stored_at or 0, 2),
        "intake_per_second": round(count / stored_at, 1) if stored_at else 0,
        "all_answered_seconds": round(done, 2),
        "end_to_end_per_second": round(count / done, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--numbers", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.count, args.numbers))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
