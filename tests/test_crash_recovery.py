"""SIGKILL the hub with one conversation queued and one assigned; restart; lose nothing.

A real ``hotline run --no-rasa`` process, killed with SIGKILL (no shutdown code runs),
then started again on the same database. Rasa is not needed: with the bot away every
citizen message goes to ACD, the path under test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AcdContact, CallRecord, Conversation, Message
from tests.chat import ChatClient
from tests.conftest import ROOT, SECRET, free_port
from tests.staff import StaffClient
from tests.test_handoff import ADMIN_PASSWORD, PASSWORD, frame
from tests.voice import call, record_of, steps
from voice_ivr.ari import AriClient


class HubProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hotline.cli", "run", "--no-rasa"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.env['HOTLINE_HTTP_PORT']}/healthz"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(url) as resp:
                        if resp.status in (200, 503):
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                await asyncio.sleep(0.1)
        raise AssertionError("hub did not start:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)


def hub_env(tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``hotline run --no-rasa`` on this test's database."""
    return {
        **os.environ,
        "HOTLINE_VAR_DIR": str(tmp_path / "var"),
        "HOTLINE_DATABASE_URL": db_url,
        "HOTLINE_SECRET_KEY": SECRET.hex(),
        "HOTLINE_RASA_TOKEN": "crash-test-token",
        "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_RASA_TIMEOUT": "1",
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HOTLINE_ACD_TICK_SECONDS": "0.2",
        "HOTLINE_VOICE": "off",
        "HOTLINE_WS_MESSAGES_PER_MINUTE": "600",
        **extra,
    }


@pytest.fixture
def hub(tmp_path: Path, db_url: str) -> Iterator[HubProcess]:
    process = HubProcess(hub_env(tmp_path, db_url), tmp_path / "hub.log")
    yield process
    process.stop()


async def test_sigkill_with_queued_and_assigned_conversations_loses_nothing(
    hub: HubProcess, db_url: str
) -> None:
    await hub.start()
    base = f"http://127.0.0.1:{hub.env['HOTLINE_HTTP_PORT']}"
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    await admin.post(
        "/api/users",
        {"username": "solo", "password": PASSWORD, "role": "agent", "capacity": 1},
        expect=201,
    )
    agent = await StaffClient(base).login("solo", PASSWORD)
    await agent.connect()
    await agent.post("/api/agents/me/status", {"status": "ready"})

    served = ChatClient(base)
    await served.connect()
    await served.say("A-1")
    await agent.wait("offer")
    await agent.post(f"/api/conversations/{served.conversation_id}/accept")
    await agent.post(
        f"/api/conversations/{served.conversation_id}/messages", {"text": "agent-1"}, expect=201
    )
    await frame(served, "message", text="agent-1")
    await served.say("A-2")
    await agent.wait("message", lambda f: f["message"]["text"] == "A-2")

    waiting = ChatClient(base)  # the agent is full (capacity 1): this one waits
    await waiting.connect()
    await waiting.say("B-1")
    await frame(waiting, "queue", position=1)
    await waiting.say("B-2")

    hub.kill()
    for client in (agent, served, waiting):
        if client.ws is not None:
            await client.ws.close()
    await hub.start()

    # The agent's session (same cookie, same CSRF token) survived; the console
    # reconnects to its chat.
    agent2 = agent
    agent2.frames.clear()
    hello = await agent2.connect()
    assert hello["conversations"] == [served.conversation_id]
    assert hello["status"]["state"] in ("busy", "ready")

    resumed = ChatClient(base)
    await resumed.connect(resume=served.resume)
    history = await frame(resumed, "history")
    texts = [m["text"] for m in history["messages"]]
    for expected in ("A-1", "agent-1", "A-2"):
        assert texts.count(expected) == 1, texts
    await resumed.say("A-3")
    pushed = await agent2.wait("message", lambda f: f["message"]["text"] == "A-3")
    assert pushed["message"]["text"] == "A-3"

    await agent2.post(
        f"/api/conversations/{served.conversation_id}/close", {"disposition": "resolved"}
    )
    offer = await agent2.wait("offer")
    assert offer["conversation_id"] == waiting.conversation_id
    await agent2.post(f"/api/conversations/{waiting.conversation_id}/accept")
    detail = await agent2.get(f"/api/conversations/{waiting.conversation_id}")
    said = [m["text"] for m in detail["transcript"] if m["from"] == "citizen"]
    assert said == ["B-1", "B-2"]

    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        per_client = (
            await session.execute(
                select(Message.client_id, func.count())
                .where(Message.client_id.is_not(None))
                .group_by(Message.conversation_id, Message.client_id)
            )
        ).all()
    await engine.dispose()
    assert per_client and all(count == 1 for _, count in per_client)
    for client in (admin, agent):
        await client.close()
    for chat in (served, waiting, resumed):
        await chat.close()


@pytest.mark.voice
async def test_sigkill_mid_call_the_restarted_hub_lets_the_caller_go(
    tmp_path: Path, db_url: str, asterisk: Settings
) -> None:
    """A caller queued when the hub dies is hung up at the restart, not left in silence
    (or rung through to an agent by the reloaded queue); the CDR and the conversation
    say what happened."""
    env = hub_env(
        tmp_path,
        db_url,
        HOTLINE_VOICE="external",
        HOTLINE_ARI_URL=asterisk.ari_url,
        HOTLINE_ARI_PASSWORD=asterisk.ari_password,
        HOTLINE_ASTERISK_ROOT=str(asterisk.asterisk_root),
    )
    hub = HubProcess(env, tmp_path / "hub.log")
    await hub.start()
    caller = asyncio.create_task(
        call(asterisk, "13500000001", [(2500, "2"), (1500, "0")], hangs_up=False)
    )
    try:
        conversation_id = await _queued_call(db_url, "13500000001")
        hub.kill()
        await hub.start()
        await asyncio.wait_for(caller, 30)  # the BYE came: the scenario ends
        left = await _asterisk_leftovers(asterisk)
    finally:
        hub.stop()
    assert left == ([], []), left  # nothing of the call (listener included) stays behind
    record = await record_of(db_url, "13500000001")
    assert record.disposition == "failed"
    assert steps(record)[-1] == ("hub_restarted", None), steps(record)
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert conversation.state == "closed" and conversation.disposition == "failed"
        assert await session.get(AcdContact, conversation_id) is None  # out of the queue
    await engine.dispose()


async def _queued_call(db_url: str, caller: str) -> str:
    """The conversation of ``caller``'s call once it waits in the queue."""
    engine = make_engine(db_url)
    try:
        for _ in range(300):
            async with sessionmaker(engine)() as session:
                row = (
                    await session.execute(
                        select(Conversation)
                        .join(CallRecord, CallRecord.conversation_id == Conversation.id)
                        .where(CallRecord.caller == caller)
                    )
                ).scalar_one_or_none()
            if row is not None and row.state == "queued":
                return row.id
            await asyncio.sleep(0.1)
        raise AssertionError(f"{caller}'s call never queued")
    finally:
        await engine.dispose()


async def _asterisk_leftovers(asterisk: Settings) -> tuple[list[str], list[str]]:
    """Channels and bridges still on Asterisk, once its lists settle (about a second)."""
    async with aiohttp.ClientSession() as http:
        ari = AriClient(
            http, asterisk.ari_url, asterisk.ari_user, asterisk.ari_password, asterisk.ari_app
        )
        for _ in range(50):
            found = [
                [str(item.get("name") or item["id"]) for item in items]
                for items in (await ari.channels(), await ari.bridges())
            ]
            if found == [[], []]:
                break
            await asyncio.sleep(0.1)
    return found[0], found[1]
