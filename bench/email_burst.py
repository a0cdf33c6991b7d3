"""A burst of 1,000 inbound letters through the embedded mail system, and auto-responders.

Starts the real stack (action server, Rasa with the trained model, and the hub as its
own process on a temporary SQLite database) with the email channel's embedded mail
system (Dovecot + the SMTP relay, on free ports). Then:

1. **Burst.** ``--letters`` letters (default 1,000) from ``--senders`` addresses (default
   200, so 5 each: under the per-sender rate limit, ``HOTLINE_EMAIL_RATE_LIMIT``, 10 an
   hour by default, which is not what this measures) are submitted to the relay as fast
   as it takes them, over ``--connections`` SMTP connections at once. Each letter asks a
   knowledge question. Waited for: every letter stored (its ``Message-ID`` in the
   thread index ``email_message``) and answered (the reply indexed and sent). Checked:
   none lost (every ``Message-ID`` indexed, one citizen ``message`` row per letter), none
   answered twice (each sender's mailbox, read over IMAP, holds exactly one reply per
   letter it sent, counted by ``In-Reply-To``, and nothing else).
2. **Auto-responders**, for ``--loop-seconds`` (default 60), at once, each a sender that
   writes one letter as a person and then answers every mail it gets from the hotline
   (read over IMAP with IDLE):

   - ``compliant`` (RFC 3834): its answers carry ``Auto-Submitted: auto-replied`` and
     thread (``In-Reply-To``). It must get the hotline's first reply and nothing after.
   - ``naive-threaded``: no such header, threaded. Bounded by the rate limit: at most
     ``RATE_LIMIT`` answers plus one notice per window.
   - ``naive-unthreaded``: no such header and no ``In-Reply-To``/``References`` (each
     answer a new letter, so each opens a conversation of its own): the same bound.

The script exits 1 when any check fails, and prints a summary (``--json`` for JSON).
The hub's Rasa queue limits (``HOTLINE_BOT_MAX_WAITING``, ``HOTLINE_BOT_MAX_WAIT``) are
raised, as in the SMS burst, so that every letter reaches the bot instead of being
handed to people as ``bot_overloaded`` (which would also be one reply per letter).

    .venv/bin/python bench/email_burst.py [--letters 1000] [--senders 200]
        [--connections 8] [--loop-seconds 60] [--rate-limit 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import hub_env, machine, wait_healthy  # noqa: E402

from channel_connectors.email import store  # noqa: E402
from channel_connectors.email.imap import ImapMailbox  # noqa: E402
from channel_connectors.email.parse import key_of  # noqa: E402
from hotline.config import load_settings  # noqa: E402
from hotline.store.db import make_engine, sessionmaker  # noqa: E402
from hotline.store.models import AuthorKind, Message  # noqa: E402
from hotline.supervisor import rasa_children, wait_ready  # noqa: E402
from hotline.texts import say  # noqa: E402
from hotline.training import model_path  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.mail import CitizenMailbox, letter, parse  # noqa: E402

HOTLINE = "hotline@hotline.test"
QUESTION = "举报之后多久会有答复？"
MARKER = "7个工作日"  # in the knowledge base's answer to QUESTION
OUT_OF_OFFICE = "您好，我正在休假，将于下周一回复您的邮件。\nI am out of the office until Monday."
QUIET = 3.0  # seconds without a new reply before the mailboxes are counted


def ids(header: object) -> str:
    return str(header or "").strip().strip("<>")


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    return body.get_content() if body is not None else ""


class Database:
    """Reads the hub's SQLite database while it runs (WAL: readers block no writer)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine)

    async def index_counts(self) -> Counter[str]:
        from sqlalchemy import func, select

        t = store.email_message
        async with self.sessions() as session:
            rows = (
                await session.execute(select(t.c.direction, func.count()).group_by(t.c.direction))
            ).all()
        return Counter({direction: int(n) for direction, n in rows})

    async def letters(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per letter: its index row (conversation, when), its citizen message rows."""
        from sqlalchemy import func, select

        t = store.email_message
        keys = {key_of(mid): mid for mid in message_ids}
        found: dict[str, dict[str, Any]] = {}
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(t.c.key, t.c.conversation_id, t.c.created_at).where(
                        t.c.direction == "in"
                    )
                )
            ).all()
            for row in rows:
                if row.key in keys:
                    found[keys[row.key]] = {
                        "conversation_id": row.conversation_id,
                        "stored": row.created_at.timestamp(),
                        "messages": 0,
                    }
            client_ids = {f"mail-{key[:40]}": mid for key, mid in keys.items()}
            counted = (
                await session.execute(
                    select(Message.client_id, func.count())
                    .where(Message.author == AuthorKind.CITIZEN.value)
                    .where(Message.client_id.like("mail-%"))
                    .group_by(Message.client_id)
                )
            ).all()
            for client_id, n in counted:
                mid = client_ids.get(client_id)
                if mid is not None and mid in found:
                    found[mid]["messages"] = int(n)
            replies = (
                await session.execute(
                    select(t.c.conversation_id, func.count(), func.max(t.c.created_at))
                    .where(t.c.direction == "out")
                    .group_by(t.c.conversation_id)
                )
            ).all()
        out = {cid: (int(n), last.timestamp()) for cid, n, last in replies}
        for item in found.values():
            item["replies"], item["replied"] = out.get(item["conversation_id"], (0, None))
        return found

    async def close(self) -> None:
        await self.engine.dispose()


async def submit(
    port: int, queue: asyncio.Queue[EmailMessage], refused: list[str], done: list[float]
) -> None:
    """One SMTP connection submitting letters from ``queue`` until it is empty."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, local_hostname="citizen.test", timeout=60
    )
    await client.connect()
    try:
        while True:
            try:
                mail = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await client.send_message(mail)
            except aiosmtplib.SMTPException as exc:
                refused.append(f"{type(exc).__name__}: {exc}")
            done.append(time.time())
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


async def read_mailbox(imap_port: int, address: str, password: str) -> list[EmailMessage]:
    box = ImapMailbox("127.0.0.1", imap_port, address, password, tls="none", timeout=30.0)
    await box.connect()
    try:
        out: list[EmailMessage] = []
        while True:
            fetched = await box.fetch_unseen(500)
            for item in fetched:
                await box.mark_seen(item.uid)
                out.append(parse(item.raw))
            if len(fetched) < 500:
                return out
    finally:
        await box.close()


async def burst(
    args: argparse.Namespace, smtp_port: int, imap_port: int, password: str, db: Database
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    senders = [f"sender{n:03d}-{run_id}@example.test" for n in range(args.senders)]
    mails: list[EmailMessage] = []
    sent_by: dict[str, list[str]] = {s: [] for s in senders}
    for i in range(args.letters):
        sender = senders[i % len(senders)]
        mail = letter(sender, HOTLINE, "咨询", QUESTION)
        mails.append(mail)
        sent_by[sender].append(ids(mail["Message-ID"]))
    message_ids = [ids(m["Message-ID"]) for m in mails]
    queue: asyncio.Queue[EmailMessage] = asyncio.Queue()
    for mail in mails:
        queue.put_nowait(mail)
    refused: list[str] = []
    done: list[float] = []
    before = await db.index_counts()
    t0 = time.time()
    await asyncio.gather(
        *(submit(smtp_port, queue, refused, done) for _ in range(args.connections))
    )
    submitted = time.time() - t0
    # Until every letter is indexed and answered, or nothing moved for 60 s.
    last_change, last = time.time(), (0, 0)
    while True:
        counts = await db.index_counts()
        now = (counts["in"] - before["in"], counts["out"] - before["out"])
        if now != last:
            last_change, last = time.time(), now
        if now[0] >= args.letters and now[1] >= args.letters:
            break
        if time.time() - last_change > 60:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(QUIET)  # a reply sent twice would be on its way now
    rows = await db.letters(message_ids)
    # Every sender's mailbox, over IMAP: the replies, by In-Reply-To.
    sem = asyncio.Semaphore(10)

    async def mailbox(sender: str) -> list[EmailMessage]:
        async with sem:
            return await read_mailbox(imap_port, sender, password)

    boxes = dict(zip(senders, await asyncio.gather(*(mailbox(s) for s in senders)), strict=True))
    replies_per_letter: Counter[str] = Counter()
    strays = 0  # a mail in a sender's box that answers none of its letters
    arrived: list[float] = []
    no_answer = 0  # replies without the article's answer ("a person will reply", ...)
    for sender, box in boxes.items():
        own = set(sent_by[sender])
        for mail in box:
            answered = ids(mail.get("In-Reply-To"))
            if answered in own:
                replies_per_letter[answered] += 1
            else:
                strays += 1
            received = mail.get("Received")
            if received and ";" in str(received):
                when = email.utils.parsedate_to_datetime(str(received).rsplit(";", 1)[1].strip())
                arrived.append(when.timestamp())
            if MARKER not in text_of(mail):
                no_answer += 1
    stored = [r["stored"] for r in rows.values()]
    replied = [r["replied"] for r in rows.values() if r["replied"] is not None]
    result = {
        "letters": args.letters,
        "senders": args.senders,
        "connections": args.connections,
        "submitted_seconds": round(submitted, 2),
        "submitted_per_second": round(args.letters / submitted, 1),
        "smtp_refused": len(refused),
        "indexed": len(rows),
        "lost": args.letters - len(rows),
        "letters_with_one_message_row": sum(1 for r in rows.values() if r["messages"] == 1),
        "letters_with_other_message_rows": sum(1 for r in rows.values() if r["messages"] != 1),
        "conversations_with_one_reply": sum(1 for r in rows.values() if r["replies"] == 1),
        "conversations_with_more_replies": sum(1 for r in rows.values() if r["replies"] > 1),
        "all_stored_seconds": round(max(stored) - t0, 2) if stored else None,
        "stored_per_second": round(len(stored) / (max(stored) - t0), 1) if stored else None,
        "all_answered_seconds": round(max(replied) - t0, 2) if replied else None,
        "answered_per_second": round(len(replied) / (max(replied) - t0), 1) if replied else None,
        "last_reply_in_mailbox_seconds": round(max(arrived) - t0, 1) if arrived else None,
        "replies_in_mailboxes": sum(len(b) for b in boxes.values()),
        "letters_with_one_reply": sum(1 for m in message_ids if replies_per_letter[m] == 1),
        "letters_with_no_reply": sum(1 for m in message_ids if replies_per_letter[m] == 0),
        "letters_with_more_replies": sum(1 for m in message_ids if replies_per_letter[m] > 1),
        "stray_mails": strays,
        "replies_without_the_article": no_answer,
    }
    if refused:
        result["smtp_refusals"] = refused[:5]
    return result


async def responder(
    kind: str,
    seconds: float,
    smtp_port: int,
    imap_port: int,
    password: str,
) -> dict[str, Any]:
    """A sender with an auto-responder: one letter as a person, then an answer to every
    mail from the hotline, for ``seconds``."""
    address = f"autoresponder-{kind}-{uuid.uuid4().hex[:6]}@example.test"
    got: list[dict[str, Any]] = []
    answered = 0
    async with CitizenMailbox(imap_port, address, password) as box:
        first = letter(address, HOTLINE, "咨询", QUESTION)
        t0 = time.monotonic()
        await send_letter(smtp_port, first)
        while (left := seconds - (time.monotonic() - t0)) > 0:
            try:
                mail = await box.next_message(left)
            except TimeoutError:
                break
            got.append(
                {
                    "at": round(time.monotonic() - t0, 1),
                    "auto_submitted": str(mail.get("Auto-Submitted", "")),
                    "text": text_of(mail)[:60],
                }
            )
            headers: dict[str, str] = {}
            threaded = kind != "naive-unthreaded"
            if kind == "compliant":
                headers["Auto-Submitted"] = "auto-replied"
            their_id = str(mail["Message-ID"])
            reply = letter(
                address,
                HOTLINE,
                f"自动回复: {mail['Subject']}",
                OUT_OF_OFFICE,
                headers=headers,
                in_reply_to=their_id if threaded else None,
                references=f"{mail.get('References', '')} {their_id}".strip() if threaded else None,
            )
            await send_letter(smtp_port, reply)
            answered += 1
    return {"address": address, "from_hotline": got, "answered": answered}


async def send_letter(port: int, mail: EmailMessage) -> None:
    await aiosmtplib.send(
        mail, hostname="127.0.0.1", port=port, start_tls=False, local_hostname="citizen.test"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="hotline-bench-email-"))
    var.chmod(0o755)  # noqa: ASYNC240 - Dovecot's mail processes (user dovecot) enter var/mail
    imap_port, smtp_port = free_port(), free_port()
    env = hub_env(
        var,
        HOTLINE_CHANNELS="webchat,email",
        HOTLINE_VOICE="off",
        HOTLINE_EMAIL_SERVER="embedded",
        HOTLINE_EMAIL_IMAP_PORT=str(imap_port),
        HOTLINE_EMAIL_SMTP_PORT=str(smtp_port),
        HOTLINE_EMAIL_RATE_LIMIT=str(args.rate_limit),
        HOTLINE_BOT_MAX_WAITING="100000",
        HOTLINE_BOT_MAX_WAIT="600",
    )
    settings = load_settings(env)
    model = model_path(settings)
    if not model.exists():
        raise SystemExit(f"no model at {model}: run `make setup` first")
    (var / "log").mkdir(exist_ok=True)
    children = rasa_children(settings, model, var / "log")
    hub = None
    db = None
    try:
        for child in children:
            child.start()
        with contextlib.redirect_stdout(sys.stderr):  # keep --json output clean
            await wait_ready(children)
        with open(var / "log" / "hub.log", "ab") as hub_log:  # noqa: ASYNC230 - before measuring
            hub = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [str(ROOT / ".venv/bin/hotline"), "run", "--no-rasa"],
                env={**os.environ, **env},
                stdout=hub_log,
                stderr=hub_log,
            )
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, settings.public_origin)
            async with http.get(f"{settings.public_origin}/healthz") as resp:
                health = (await resp.json())["components"]["channel:email"]
        password = (var / "email" / "password").read_text().strip()
        db = Database(settings.database_url)
        burst_result = await burst(args, smtp_port, imap_port, password, db)
        kinds = ("compliant", "naive-threaded", "naive-unthreaded")
        loops = await asyncio.gather(
            *(responder(kind, args.loop_seconds, smtp_port, imap_port, password) for kind in kinds)
        )
        await asyncio.sleep(QUIET)
        kept = await db.index_counts()
    finally:
        if db is not None:
            await db.close()
        if hub is not None:
            hub.terminate()
            try:
                hub.wait(20)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait(10)
        for child in reversed(children):
            child.stop()
    notices = {say("email_rate_limited", lang) for lang in ("zh", "en")}
    responders = {}
    for kind, loop in zip(kinds, loops, strict=True):
        got = loop["from_hotline"]
        is_notice = [any(n[:20] in g["text"] for n in notices) for g in got]
        responders[kind] = {
            "mails_from_hotline": len(got),
            "answers": len(got) - sum(is_notice),
            "rate_limit_notices": sum(is_notice),
            "mails_to_hotline": 1 + loop["answered"],
            "last_mail_from_hotline_at_s": got[-1]["at"] if got else None,
            "all_auto_submitted": all(g["auto_submitted"] == "auto-replied" for g in got),
            "mails": got,
        }
    return {
        "date": email.utils.formatdate(localtime=True),
        "machine": machine(),
        "email_health": f"{health['status']}: {health['detail']}",
        "rate_limit": args.rate_limit,
        "burst": burst_result,
        "loop_seconds": args.loop_seconds,
        "responders": responders,
        "index_rows_at_end": dict(kept),
        "var": str(var),
    }


def violations(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    b = result["burst"]
    n = args.letters
    bad = []
    if b["smtp_refused"]:
        bad.append(f"{b['smtp_refused']} letters refused by the relay")
    if b["lost"]:
        bad.append(f"{b['lost']} letters lost (not in email_message)")
    if b["letters_with_one_message_row"] != n:
        bad.append(
            f"{b['letters_with_other_message_rows']} letters without exactly one message row"
        )
    if b["letters_with_one_reply"] != n:
        bad.append(
            f"replies per letter: {b['letters_with_no_reply']} none, "
            f"{b['letters_with_more_replies']} more than one"
        )
    if b["stray_mails"]:
        bad.append(f"{b['stray_mails']} mails in senders' boxes answer none of their letters")
    if b["conversations_with_more_replies"]:
        bad.append(f"{b['conversations_with_more_replies']} conversations replied more than once")
    compliant = result["responders"]["compliant"]
    if compliant["mails_from_hotline"] != 1:
        bad.append(f"compliant auto-responder got {compliant['mails_from_hotline']} mails (want 1)")
    limit = args.rate_limit
    for kind in ("naive-threaded", "naive-unthreaded"):
        r = result["responders"][kind]
        if r["answers"] > limit or r["rate_limit_notices"] > 1:
            bad.append(
                f"{kind} auto-responder got {r['answers']} answers and "
                f"{r['rate_limit_notices']} notices (at most {limit} and 1)"
            )
        if not r["all_auto_submitted"]:
            bad.append(f"{kind}: a hotline mail without Auto-Submitted: auto-replied")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--letters", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--loop-seconds", type=float, default=60.0)
    parser.add_argument("--rate-limit", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.letters / args.senders > args.rate_limit:
        raise SystemExit("more letters per sender than the rate limit: raise --senders")
    result = asyncio.run(run(args))
    bad = violations(result, args)
    result["violations"] = bad
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{result['date']}; {result['machine']}")
        print(f"email channel: {result['email_health']}; rate limit {result['rate_limit']}/h")
        print("burst:")
        for key, value in result["burst"].items():
            print(f"  {key}: {value}")
        print(f"auto-responders, {result['loop_seconds']:.0f} s each (at once):")
        for kind, r in result["responders"].items():
            print(
                f"  {kind}: {r['mails_to_hotline']} mails to the hotline, "
                f"{r['mails_from_hotline']} back ({r['answers']} answers, "
                f"{r['rate_limit_notices']} rate-limit notices), last one at "
                f"{r['last_mail_from_hotline_at_s']} s"
            )
        print(f"thread index rows at the end: {result['index_rows_at_end']}")
        print(f"var: {result['var']}")
        print("checks:", "all held" if not bad else "VIOLATED")
        for line in bad:
            print(f"  - {line}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
