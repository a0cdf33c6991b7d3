"""Floods: a busy bot is not a dead bot, and one address cannot open conversations at will.

Real Rasa (the session ``rasa_stack``), the real hub on a real port, both databases. The
gate's single slot is taken by the test itself where a test needs Rasa to be busy for
certain: that is a turn in flight like any other, so what waits behind it waits exactly
as it would behind a slow Rasa call.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import HUB
from hotline.clientip import parse_networks
from hotline.config import Settings
from hotline.hub import Hub
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Conversation
from hotline.texts import say
from hotline.web import create_app
from tests.chat import ChatClient, texts
from tests.conftest import free_port

QUESTION = "举报以后多久会有答复？"  # answered from the knowledge base: no handoff
ADMIN_PASSWORD = "admin-password-for-tests"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[str, Hub]]:
    settings = replace(settings, http_port=free_port())
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), server.app[HUB]
    finally:
        await server.close()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait for a condition of the hub's state that has no event of its own."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def conversations(settings: Settings, ids: list[str]) -> list[Conversation]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            rows = (
                await session.execute(select(Conversation).where(Conversation.id.in_(ids)))
            ).scalars()
            return list(rows)
    finally:
        await engine.dispose()


def chat_from(base: str, forwarded_for: str | None = None, lang: str = "zh") -> ChatClient:
    chat = ChatClient(base, lang)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    chat.session = aiohttp.ClientSession(headers=headers)
    return chat


async def close_all(chats: list[ChatClient]) -> None:
    await asyncio.gather(*(c.close() for c in chats))


async def test_a_saturated_bot_answers_everyone_and_hands_off_no_one(
    rasa_stack: object, settings: Settings
) -> None:
    n = 8
    busy = replace(
        settings, rasa_concurrency=1, rasa_timeout=2.0, bot_max_wait=120, bot_max_waiting=100
    )
    async with running(busy) as (base, hub):
        chats = [chat_from(base) for _ in range(n)]
        try:
            await asyncio.gather(*(c.connect() for c in chats))
            async with hub.gate.turn():  # Rasa is busy with someone else's turn
                said = [asyncio.create_task(c.say(QUESTION, timeout=120)) for c in chats]
                await until(lambda: hub.gate.stats.waiting_turns == n)
                # Longer than Rasa's own timeout: waiting for a slot must not count.
                await asyncio.sleep(busy.rasa_timeout + 0.5)
                assert not any(task.done() for task in said)
            replies = await asyncio.gather(*said)
        finally:
            await close_all(chats)
        assert hub.gate.stats.waited >= n and hub.gate.stats.expired == 0
    for reply in replies:
        assert reply and {r["from"] for r in reply} == {"bot"}, reply
    rows = await conversations(busy, [c.conversation_id or "" for c in chats])
    assert [(r.state, r.handoff_reason) for r in rows] == [("bot", None)] * n


async def test_a_greeting_waits_for_a_busy_bot_instead_of_being_dropped(
    rasa_stack: object, settings: Settings
) -> None:
    async with running(replace(settings, rasa_concurrency=1)) as (base, hub):
        chat = chat_from(base)
        try:
            async with hub.gate.turn():
                connecting = asyncio.create_task(chat.connect())
                await until(lambda: hub.gate.stats.waiting_greetings == 1)
                assert not connecting.done()
            welcome = await connecting
            assert not welcome["resumed"]
            assert chat.greeting and {r["from"] for r in chat.greeting} == {"bot"}
            # The typing indicator was on all the while the greeting waited.
            kinds = [(f["type"], f.get("on")) for f in chat.frames]
            assert kinds[:2] == [("welcome", None), ("typing", True)]
            assert kinds[-1] == ("typing", False)
        finally:
            await chat.close()


async def test_turns_waiting_past_the_limit_go_to_a_person_as_overloaded(
    rasa_stack: object, settings: Settings
) -> None:
    n = 4
    busy = replace(settings, rasa_concurrency=1, bot_max_wait=0.2)
    async with running(busy) as (base, hub):
        chats = [chat_from(base) for _ in range(n)]
        try:
            await asyncio.gather(*(c.connect() for c in chats))
            async with hub.gate.turn():
                replies = await asyncio.gather(*(c.say(QUESTION, timeout=30) for c in chats))
        finally:
            await close_all(chats)
        assert hub.gate.stats.expired == n
    for chat, reply in zip(chats, replies, strict=True):
        assert texts(reply) == say("bot_overloaded", "zh")
        assert ("state", "queued") in [(f["type"], f.get("state")) for f in chat.frames]
    rows = await conversations(busy, [c.conversation_id or "" for c in chats])
    assert [(r.state, r.handoff_reason) for r in rows] == [("queued", "bot_overloaded")] * n


async def test_a_dead_bot_is_still_unavailable(settings: Settings) -> None:
    dead = replace(settings, rasa_url=f"http://127.0.0.1:{free_port()}", rasa_timeout=1.0)
    async with running(dead) as (base, _hub):
        chat = chat_from(base, lang="en")
        try:
            await chat.connect()
            assert chat.greeting == []  # a dead bot's greeting is skipped
            reply = await chat.say("How long until I hear back?")
        finally:
            await chat.close()
    assert texts(reply) == say("bot_unavailable", "en")
    [row] = await conversations(dead, [chat.conversation_id or ""])
    assert (row.state, row.handoff_reason) == ("queued", "bot_unavailable")


# ---------------------------------------------------------------- per-address limits
def _limited(settings: Settings, trusted: str = "") -> Settings:
    return replace(
        settings,
        rasa_url=f"http://127.0.0.1:{free_port()}",  # greetings fail fast; not needed here
        rasa_timeout=1.0,
        new_conversations_per_address=3,
        new_conversations_window=60,
        trusted_proxies=parse_networks(trusted),
        admin_password=ADMIN_PASSWORD,
        login_attempts=2,
    )


async def next_frame(chat: ChatClient, *kinds: str) -> dict[str, Any]:
    """The next frame of one of ``kinds`` (greetings' typing frames come in between)."""
    while True:
        frame = await chat.recv(10)
        if frame["type"] in kinds:
            return frame


async def refused(base: str, forwarded_for: str | None = None) -> dict[str, Any]:
    """A WebSocket upgrade as a browser sends it, refused before any socket opens."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    async with aiohttp.ClientSession() as http, http.get(f"{base}/ws/chat", headers=headers) as r:
        assert r.status == 429, r.status
        retry_after = int(r.headers["Retry-After"])
        body: dict[str, Any] = await r.json()
    assert 1 <= retry_after <= 20 and body["retry_after"] == retry_after
    assert body["error"] == "too_many_conversations"
    assert body["message"] == say("error_too_many_conversations", "en", retry_after=retry_after)
    assert body["message_zh"] == say("error_too_many_conversations", "zh", retry_after=retry_after)
    return body


async def test_new_conversations_per_address_behind_a_trusted_proxy(settings: Settings) -> None:
    limited = _limited(settings, trusted="127.0.0.1")
    async with running(limited) as (base, _hub):
        chats = [chat_from(base, "198.51.100.7") for _ in range(3)]
        try:
            for chat in chats:
                await chat.connect()
            await refused(base, "198.51.100.7")
            # Forging an address to the left of the proxy's own entry changes nothing.
            await refused(base, "203.0.113.1, 198.51.100.7")
            # Another citizen behind the same proxy is not limited.
            other = chat_from(base, "198.51.100.8")
            chats.append(other)
            await other.connect()
            # Reconnecting to a conversation opens nothing new; a hello on an open
            # socket that would open one more than the address may, is refused.
            assert other.ws is not None
            for _ in range(2):
                await other.ws.send_json({"type": "hello", "lang": "en"})
                assert (await next_frame(other, "welcome", "error"))["type"] == "welcome"
            await other.ws.send_json({"type": "hello", "lang": "en"})
            error = await next_frame(other, "welcome", "error")
            assert error["type"] == "error" and error["code"] == "too_many_conversations"
            assert error["message"] == say(
                "error_too_many_conversations", "en", retry_after=error["retry_after"]
            )
            assert 1 <= error["retry_after"] <= 20
            await other.ws.send_json({"type": "hello", "lang": "en", "resume": chats[0].resume})
            resumed = await next_frame(other, "welcome", "error")
            assert resumed["type"] == "welcome" and resumed["resumed"]
        finally:
            await close_all(chats)


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(settings: Settings) -> None:
    limited = _limited(settings, trusted="")  # the peer 127.0.0.1 is not a proxy we trust
    async with running(limited) as (base, _hub):
        chats = [chat_from(base, f"198.51.100.{n}") for n in range(3)]
        try:
            for chat in chats:
                await chat.connect()
            await refused(base, "198.51.100.99")
            await refused(base)
        finally:
            await close_all(chats)


async def login(base: str, username: str, password: str, forwarded_for: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/login",
            json={"username": username, "password": password},
            headers={"X-Forwarded-For": forwarded_for},
        ) as resp,
    ):
        return resp.status


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-peer"])
async def test_the_login_lock_counts_the_same_client_address(
    settings: Settings, trusted: bool
) -> None:
    limited = _limited(settings, trusted="127.0.0.1" if trusted else "")
    async with running(limited) as (base, _hub):
        # Two failures for two unknown names (the second one locks): only the address
        # can be locked.
        assert await login(base, "nobody-1", "wrong-password-1", "198.51.100.7") == 401
        assert await login(base, "nobody-2", "wrong-password-2", "198.51.100.7") == 429
        assert await login(base, "admin", ADMIN_PASSWORD, "198.51.100.7") == 429
        # Behind a trusted proxy another address is another client; from an untrusted
        # peer the header means nothing and it is the same client as before.
        assert await login(base, "admin", ADMIN_PASSWORD, "198.51.100.8") == (
            200 if trusted else 429
        )
