"""Turn latency of one knowledge question on web chat, Telegram and email, in one run.

Starts the real stack (action server, Rasa with the trained model, and the hub as its
own process on a temporary SQLite database, ``HOTLINE_CHANNELS=webchat,email,telegram``)
with the email channel's embedded mail system (Dovecot + the SMTP relay, on free ports)
and the Telegram channel in webhook mode against the local Bot API double
(``tests/telegram_api.py``, served from this process). Then asks the same question
(``--question``, whose answer holds ``--marker``) ``--turns`` times per channel, each
time as a new citizen, one turn at a time, the channels taking turns in a rotating
order so that machine noise hits all alike. Timed, per channel:

- web chat: the message frame sent on the WebSocket → the answer's frame received (the
  end of the turn, ``typing`` off, is reported too);
- Telegram: the citizen's update sent to the double (which POSTs it to the hub's
  webhook) → the hub's ``sendMessage`` with the answer reaching the double;
- email: the letter's SMTP submission to the relay → the reply in the citizen's own
  mailbox, read over IMAP with IDLE.

Before the timed turn a web chat citizen connects (the greeting turn) and a Telegram
citizen sends ``/start`` (the greeting), untimed; a letter has no such step. Reported:
p50/p95 per channel and each channel's p50 and p95 as a ratio of web chat's.

    .venv/bin/python bench/channel_latency.py [--turns 20] [--json]
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
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import hub_env, machine, pct, wait_healthy  # noqa: E402

from channel_connectors.telegram.settings import LOCAL_TOKEN  # noqa: E402
from hotline.config import load_settings  # noqa: E402
from hotline.supervisor import rasa_children, wait_ready  # noqa: E402
from hotline.training import model_path  # noqa: E402
from tests.chat import ChatClient  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.mail import CitizenMailbox, letter, send_mail  # noqa: E402
from tests.telegram_api import Bot, BotApiDouble  # noqa: E402

QUESTION = "举报之后多久会有答复？"
MARKER = "7个工作日"
HOTLINE_ADDRESS = "hotline@hotline.test"
CHANNELS = ("webchat", "telegram", "email")
TIMEOUT = 60.0


class StampingDouble(BotApiDouble):
    """The Bot API double, noting when each of the bot's messages reached it."""

    async def method(self, request: web.Request) -> web.Response:
        response = await super().method(request)
        now = time.perf_counter()
        for bot in self.bots.values():
            for sent in reversed(bot.messages):
                if "t" in sent:
                    break
                sent["t"] = now
        return response


class Citizens:
    """One turn per channel, each as a new citizen; returns the timings in ms."""

    def __init__(
        self,
        base: str,
        http: aiohttp.ClientSession,
        double: StampingDouble,
        smtp_port: int,
        imap_port: int,
        password: str,
        question: str,
        marker: str,
    ) -> None:
        self.base = base
        self.http = http
        self.double = double
        self.bot: Bot = double.bot(LOCAL_TOKEN)
        self.citizen_api = f"{double.url}/_double/{LOCAL_TOKEN}"
        self.smtp_port = smtp_port
        self.imap_port = imap_port
        self.password = password
        self.question = question
        self.marker = marker
        self.users = iter(range(700_000_001, 800_000_000))
        self.problems: list[str] = []
        self.letters: list[dict[str, Any]] = []  # timed letters, for the breakdown

    async def webchat(self) -> dict[str, float]:
        client = ChatClient(self.base, "zh")
        await client.connect()  # the greeting turn, untimed
        try:
            t0 = time.perf_counter()
            msg_id = await client.send(self.question)
            answer = None
            acked = False
            async with asyncio.timeout(TIMEOUT):
                while True:
                    frame = await client.recv(TIMEOUT)
                    if frame["type"] == "error":
                        raise AssertionError(f"error frame: {frame}")
                    if frame["type"] == "ack" and frame.get("id") == msg_id:
                        acked = True
                    elif frame["type"] == "message" and self.marker in frame.get("text", ""):
                        answer = time.perf_counter()
                    elif acked and frame["type"] == "typing" and not frame["on"]:
                        end = time.perf_counter()
                        break
            if answer is None:
                self.problems.append("webchat: the turn ended without the answer")
                answer = end
            return {"ms": (answer - t0) * 1000, "end_ms": (end - t0) * 1000}
        finally:
            await client.close()

    def _chat(self, chat_id: int, after: int) -> list[dict[str, Any]]:
        return [m for m in self.bot.messages if m["chat_id"] == chat_id and m["seq"] > after]

    async def _send_update(self, user: dict[str, Any], text: str) -> None:
        async with self.http.post(
            f"{self.citizen_api}/send", json={"user": user, "text": text}
        ) as resp:
            answer = await resp.json()
        if resp.status != 200 or answer.get("status") != 200:
            raise AssertionError(f"telegram update not accepted: {answer}")

    async def _wait_chat(self, chat_id: int, after: int, marker: str | None) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for m in self._chat(chat_id, after):
                if marker is None or marker in m["text"]:
                    return m
            return None

        async with asyncio.timeout(TIMEOUT), self.bot.changed:
            await self.bot.changed.wait_for(lambda: found() is not None)
        message = found()
        assert message is not None
        message.setdefault("t", time.perf_counter())
        return message

    async def telegram(self) -> dict[str, float]:
        user_id = next(self.users)
        user = {"id": user_id, "language_code": "zh-hans"}
        last = max((m["seq"] for m in self.bot.messages), default=0)
        await self._send_update(user, "/start")  # the greeting, untimed
        await self._wait_chat(user_id, last, None)
        while True:  # until the greeting is complete (no message for 0.3 s)
            seen = len(self.bot.messages)
            await asyncio.sleep(0.3)
            if len(self.bot.messages) == seen:
                break
        last = max((m["seq"] for m in self.bot.messages), default=0)
        t0 = time.perf_counter()
        await self._send_update(user, self.question)
        answered = await self._wait_chat(user_id, last, self.marker)
        return {"ms": (answered["t"] - t0) * 1000}

    async def email(self) -> dict[str, float]:
        address = f"citizen-{uuid.uuid4().hex[:12]}@example.test"
        mail = letter(address, HOTLINE_ADDRESS, "咨询", self.question)
        sent_id = str(mail["Message-ID"])
        async with CitizenMailbox(self.imap_port, address, self.password) as box:
            t0 = time.perf_counter()
            await send_mail(self.smtp_port, mail)
            submitted = time.perf_counter()
            submitted_wall = time.time()
            reply = await box.next_message(
                TIMEOUT, lambda m: str(m.get("In-Reply-To", "")).strip() == sent_id
            )
            t1 = time.perf_counter()
        self.letters.append(
            {
                "message_id": sent_id.strip("<>"),
                "submitted": submitted_wall,
                "arrived": submitted_wall + (t1 - submitted),
            }
        )
        body = reply.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        if self.marker not in text:
            self.problems.append(f"email: a reply without {self.marker!r}: {text[:80]!r}")
        if reply.get("Auto-Submitted") != "auto-replied":
            self.problems.append("email: a reply without Auto-Submitted: auto-replied")
        return {"ms": (t1 - t0) * 1000, "smtp_ms": (submitted - t0) * 1000}


async def email_breakdown(database_url: str, letters: list[dict[str, Any]]) -> dict[str, Any]:
    """Where an email turn's time goes, from the thread index's timestamps (the hub's
    clock is this machine's): the letter submitted → indexed by the hub (the hub's IMAP
    reader woken by IDLE, fetch, parse) → the reply indexed (storing, Rasa, the answer)
    → the reply in the citizen's mailbox (SMTP to the relay, LMTP, the citizen's IDLE)."""
    from sqlalchemy import select

    from channel_connectors.email import store
    from channel_connectors.email.parse import key_of
    from hotline.store.db import make_engine, sessionmaker

    table = store.email_message
    engine = make_engine(database_url)
    parts: dict[str, list[float]] = {"pickup": [], "hub": [], "delivery": []}
    try:
        async with sessionmaker(engine)() as session:
            for item in letters:
                row = (
                    await session.execute(
                        select(table.c.conversation_id, table.c.created_at).where(
                            table.c.key == key_of(item["message_id"])
                        )
                    )
                ).first()
                if row is None:
                    continue
                out = (
                    await session.execute(
                        select(table.c.created_at)
                        .where(
                            table.c.conversation_id == row.conversation_id,
                            table.c.direction == "out",
                        )
                        .order_by(table.c.id)
                    )
                ).first()
                if out is None:
                    continue
                taken, replied = row.created_at.timestamp(), out.created_at.timestamp()
                parts["pickup"].append((taken - item["submitted"]) * 1000)
                parts["hub"].append((replied - taken) * 1000)
                parts["delivery"].append((item["arrived"] - replied) * 1000)
    finally:
        await engine.dispose()
    return {name: summary(values) for name, values in parts.items() if values}


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(samples, 0.5), 1),
        "p95_ms": round(pct(samples, 0.95), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


async def run(turns: int, question: str, marker: str) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="hotline-bench-channels-"))
    var.chmod(0o755)  # noqa: ASYNC240 - Dovecot's mail processes (user dovecot) enter var/mail
    double = StampingDouble()
    double_url = await double.start()
    imap_port, smtp_port = free_port(), free_port()
    env = hub_env(
        var,
        HOTLINE_CHANNELS="webchat,email,telegram",
        HOTLINE_VOICE="off",
        HOTLINE_EMAIL_SERVER="embedded",
        HOTLINE_EMAIL_IMAP_PORT=str(imap_port),
        HOTLINE_EMAIL_SMTP_PORT=str(smtp_port),
        HOTLINE_TELEGRAM_API_URL=double_url,
        HOTLINE_TELEGRAM_MODE="webhook",
    )
    settings = load_settings(env)
    model = model_path(settings)
    if not model.exists():
        raise SystemExit(f"no model at {model}: run `make setup` first")
    (var / "log").mkdir(exist_ok=True)
    children = rasa_children(settings, model, var / "log")
    hub = None
    samples: dict[str, list[float]] = {c: [] for c in CHANNELS}
    extra: dict[str, list[float]] = {"webchat_end": [], "email_smtp": []}
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
        base = settings.public_origin
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            async with http.get(f"{base}/healthz") as resp:
                health = await resp.json()
            password = (var / "email" / "password").read_text().strip()
            citizens = Citizens(
                base, http, double, smtp_port, imap_port, password, question, marker
            )
            turn = {
                "webchat": citizens.webchat,
                "telegram": citizens.telegram,
                "email": citizens.email,
            }
            for name in CHANNELS:  # warm every path once (Rasa's first turn is slow)
                await turn[name]()
            t_start = time.perf_counter()
            for i in range(turns):
                order = CHANNELS[i % 3 :] + CHANNELS[: i % 3]
                for name in order:
                    result = await turn[name]()
                    samples[name].append(result["ms"])
                    if "end_ms" in result:
                        extra["webchat_end"].append(result["end_ms"])
                    if "smtp_ms" in result:
                        extra["email_smtp"].append(result["smtp_ms"])
            wall = time.perf_counter() - t_start
            timed_letters = citizens.letters[-turns:]
    finally:
        if hub is not None:
            hub.terminate()
            try:
                hub.wait(20)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait(10)
        for child in reversed(children):
            child.stop()
        await double.close()
    breakdown = await email_breakdown(settings.database_url, timed_letters)
    web_chat = summary(samples["webchat"])
    channels = {name: summary(samples[name]) for name in CHANNELS}
    for name in CHANNELS:
        channels[name]["p50_ratio_to_webchat"] = round(
            channels[name]["p50_ms"] / web_chat["p50_ms"], 2
        )
        channels[name]["p95_ratio_to_webchat"] = round(
            channels[name]["p95_ms"] / web_chat["p95_ms"], 2
        )
    return {
        "date": email.utils.formatdate(localtime=True),
        "machine": machine(),
        "question": question,
        "turns_per_channel": turns,
        "channels": channels,
        "webchat_end_of_turn": summary(extra["webchat_end"]),
        "email_smtp_submission": summary(extra["email_smtp"]),
        "email_breakdown": breakdown,
        "health": {
            name: f"{c['status']}: {c['detail']}"
            for name, c in health["components"].items()
            if name.startswith("channel:")
        },
        "measuring_seconds": round(wall, 1),
        "samples_ms": {name: [round(x, 1) for x in samples[name]] for name in CHANNELS},
        "problems": citizens.problems,
        "var": str(var),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--marker", default=MARKER)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.turns, args.question, args.marker))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{result['date']}; {result['machine']}")
        print(f"{args.turns} turns per channel of {args.question!r}, interleaved")
        print(f"{'channel':>10} {'p50':>9} {'p95':>9} {'min':>9} {'max':>9}  p50 / p95 vs web chat")
        for name, s in result["channels"].items():
            print(
                f"{name:>10} {s['p50_ms']:>7.1f}ms {s['p95_ms']:>7.1f}ms {s['min_ms']:>7.1f}ms "
                f"{s['max_ms']:>7.1f}ms  {s['p50_ratio_to_webchat']:.2f} / "
                f"{s['p95_ratio_to_webchat']:.2f}"
            )
        end = result["webchat_end_of_turn"]
        smtp = result["email_smtp_submission"]
        print(f"web chat end of turn: p50 {end['p50_ms']} ms, p95 {end['p95_ms']} ms")
        print(f"email SMTP submission alone: p50 {smtp['p50_ms']} ms, p95 {smtp['p95_ms']} ms")
        for part, s in result["email_breakdown"].items():
            print(f"email {part}: p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms")
        print(f"health: {result['health']}")
        for key in ("measuring_seconds", "samples_ms", "var"):
            print(f"{key}: {result[key]}")
    if result["problems"]:
        print("problems:", *result["problems"], sep="\n  ", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
