"""The web chat WebSocket: protocol, validation, limits and Rasa being down.

These tests need no Rasa: the hub's Rasa URL points at a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Conversation, Message
from hotline.web import create_app
from tests.chat import ChatClient
from tests.conftest import free_port


@pytest.fixture
def no_rasa(settings: Settings) -> Settings:
    return replace(settings, rasa_url=f"http://127.0.0.1:{free_port()}", rasa_timeout=2.0)


@pytest.fixture
async def server(no_rasa: Settings) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(no_rasa), host="127.0.0.1", port=no_rasa.http_port)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[ChatClient]:
    chat = ChatClient(str(server.make_url("/")))
    await chat.connect()
    yield chat
    await chat.close()


async def _rows(settings: Settings, conversation_id: str) -> tuple[Conversation, list[Message]]:
    engine = make_engine(settings.database_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, conversation_id)
        messages = (
            (
                await session.execute(
                    select(Message)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(Message.id)
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    assert conversation is not None
    return conversation, list(messages)


async def test_rasa_down_keeps_the_message_and_queues(
    client: ChatClient, no_rasa: Settings
) -> None:
    replies = await client.say("我要举报县长受贿")
    assert replies[-1]["from"] == "system"
    assert "暂时无法回复" in replies[-1]["text"]
    assert {"type": "state", "state": "queued"} in client.frames
    conversation, messages = await _rows(no_rasa, client.conversation_id or "")
    assert conversation.state == "queued" and conversation.handoff_reason == "bot_unavailable"
    assert [m.author for m in messages] == ["citizen", "system"]
    assert messages[0].text == "我要举报县长受贿" and messages[0].handled
    # Later messages are still stored and acknowledged; the answer while waiting is the
    # citizen's place in the queue (Rasa is not asked once a conversation is queued).
    await client.say("Hello, anyone there?")
    place = next(f for f in reversed(client.frames) if f["type"] == "queue")
    assert place["position"] == 1


async def test_resend_after_reconnect_is_stored_once(client: ChatClient, no_rasa: Settings) -> None:
    msg_id = str(uuid.uuid4())
    await client.say("第一条消息", msg_id=msg_id)
    token = client.resume
    await client.close()
    again = ChatClient(client.base_url)
    welcome = await again.connect(resume=token)
    assert welcome["resumed"] is True and welcome["conversation_id"] == client.conversation_id
    history = await again.recv()
    while history["type"] == "queue":  # ACD may announce the place in line first
        history = await again.recv()
    assert history["type"] == "history"
    assert next(m["text"] for m in history["messages"]) == "第一条消息"
    assert history["messages"][0]["id"] == msg_id
    await again.send("第一条消息", msg_id=msg_id)
    ack = await again.recv()
    while ack["type"] == "queue":  # the conversation is queued (Rasa is down)
        ack = await again.recv()
    assert ack == {"type": "ack", "id": msg_id, "duplicate": True}
    _, messages = await _rows(no_rasa, again.conversation_id or "")
    assert sum(1 for m in messages if m.client_id == msg_id) == 1
    await again.close()


async def test_unknown_resume_token_starts_fresh(server: TestServer) -> None:
    chat = ChatClient(str(server.make_url("/")))
    welcome = await chat.connect(resume="A" * 43)
    assert welcome["resumed"] is False and welcome["resume"] != "A" * 43
    await chat.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1,2]", "bad_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message", "id": "x", "text": "hi"}', "bad_id"),
        ('{"type": "message", "id": "abcdefgh-1", "text": 5}', "bad_text"),
        ('{"type": "message", "id": "abcdefgh-2", "text": "   "}', "empty_text"),
        (
            '{"type": "message", "id": "abcdefgh-3", "text": "hi", "payload": "/x{\\"a\\":1}"}',
            "bad_payload",
        ),
        ('{"type": "lang", "lang": "fr"}', "bad_lang"),
    ],
)
async def test_malformed_frames_get_errors_and_the_socket_survives(
    client: ChatClient, frame: str, code: str
) -> None:
    assert client.ws is not None
    await client.ws.send_str(frame)
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == code
    await client.ws.send_json({"type": "ping"})
    assert await client.recv() == {"type": "pong"}


async def test_message_before_hello_is_refused(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.make_url("/ws/chat")) as ws:
            await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "hi"})
            error = await ws.receive_json()
            assert error["code"] == "hello_required"


async def test_a_socket_that_never_says_hello_is_closed(no_rasa: Settings) -> None:
    settings = replace(no_rasa, channel_sections={"webchat": {"hello_timeout": "0.5"}})
    server = TestServer(create_app(settings), host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(server.make_url("/ws/chat")) as idle:
                error = await idle.receive_json(timeout=5)
                assert error["code"] == "hello_timeout"
                closed = await idle.receive(timeout=5)
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008
            # One that said hello in time stays, however long it is quiet.
            chat = ChatClient(str(server.make_url("/")))
            await chat.connect()
            assert chat.ws is not None
            with pytest.raises(asyncio.TimeoutError):
                await chat.ws.receive(timeout=1.0)
            assert not chat.ws.closed
            await chat.close()
    finally:
        await server.close()


async def test_channels_are_reported_in_healthz_and_checked_at_start(
    server: TestServer, no_rasa: Settings
) -> None:
    from hotline.config import ConfigError

    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/healthz")) as resp:
            body = await resp.json()
    assert body["components"]["channel:webchat"] == {"status": "ok", "detail": "ok"}
    bad = replace(no_rasa, channel_sections={"webchat": {"hello_timeout": "forever"}})
    with pytest.raises(ConfigError, match="HOTLINE_WEBCHAT_HELLO_TIMEOUT"):
        create_app(bad)
    with pytest.raises(ConfigError, match="no channel 'pigeon'"):
        create_app(replace(no_rasa, channels=("webchat", "pigeon")))


async def test_binary_frame_is_refused(client: ChatClient) -> None:
    assert client.ws is not None
    await client.ws.send_bytes(b"\x00\x01")
    assert (await client.recv())["code"] == "bad_frame"


async def test_text_over_the_limit_is_refused_with_its_id(
    client: ChatClient, no_rasa: Settings
) -> None:
    msg_id = str(uuid.uuid4())
    await client.send("长" * (no_rasa.max_text_chars + 1), msg_id=msg_id)
    error = await client.recv()
    assert error["code"] == "text_too_long" and error["id"] == msg_id
    assert "消息太长" in error["message"] and str(no_rasa.max_text_chars) in error["message"]
    _, messages = await _rows(no_rasa, client.conversation_id or "")
    assert messages == []
    replies = await client.say("正常长度的消息")  # the connection is still usable
    assert replies


async def test_oversize_frame_closes_only_that_socket(
    server: TestServer, no_rasa: Settings
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.make_url("/ws/chat")) as ws:
            await ws.send_json({"type": "hello", "lang": "zh"})
            await ws.receive_json()
            await ws.send_str(
                json.dumps(
                    {
                        "type": "message",
                        "id": "a" * 8,
                        "text": "x" * (no_rasa.ws_max_frame_bytes + 10),
                    }
                )
            )
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1009
    chat = ChatClient(str(server.make_url("/")))  # the server keeps serving others
    assert (await chat.connect())["type"] == "welcome"
    await chat.close()


async def test_rate_limit_per_connection(settings: Settings) -> None:
    slow = replace(settings, ws_messages_per_minute=6, rasa_url=f"http://127.0.0.1:{free_port()}")
    srv = TestServer(create_app(slow), host="127.0.0.1", port=slow.http_port)
    await srv.start_server()
    try:
        chat = ChatClient(str(srv.make_url("/")))
        await chat.connect()
        codes = []
        for i in range(5):
            await chat.send(f"消息{i}")
            while True:
                frame = await chat.recv()
                if frame["type"] in ("ack", "error"):
                    codes.append(frame.get("code", "ack"))
                    break
        assert codes[:2] == ["ack", "ack"]  # the burst allows 3 frames; hello was one
        assert "rate_limited" in codes
        # Repeated hellos (each may open a conversation) are limited the same way.
        assert chat.ws is not None
        for _ in range(3):
            await chat.ws.send_json({"type": "hello", "lang": "zh"})
        seen = [await chat.recv() for _ in range(3)]
        assert any(f.get("code") == "rate_limited" for f in seen)
        await chat.close()
    finally:
        await srv.close()


async def test_foreign_origin_is_rejected(server: TestServer) -> None:
    chat = ChatClient(str(server.make_url("/")), origin="https://evil.example")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await chat.connect()
    assert info.value.status == 403
    await chat.close()
    same = ChatClient(str(server.make_url("/")), origin=str(server.make_url("/")).rstrip("/"))
    assert (await same.connect())["type"] == "welcome"
    await same.close()


async def test_configured_origin_is_allowed(settings: Settings) -> None:
    allowed = replace(settings, allowed_origins=("https://partner.example",))
    srv = TestServer(create_app(allowed), host="127.0.0.1", port=allowed.http_port)
    await srv.start_server()
    try:
        chat = ChatClient(str(srv.make_url("/")), origin="https://partner.example")
        assert (await chat.connect())["type"] == "welcome"
        await chat.close()
    finally:
        await srv.close()


async def test_pages_and_headers(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/")) as resp:
            assert resp.status == 200
            assert "/widget.js" in await resp.text()
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(server.make_url("/widget.js")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/javascript")


async def test_healthz_reports_rasa_down(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 503
            body = await resp.json()
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["rasa"]["status"] == "down"


async def test_messages_are_answered_in_order(client: ChatClient, no_rasa: Settings) -> None:
    assert client.ws is not None
    ids = [await client.send(f"第{i}条") for i in range(3)]
    acks = []
    while len(acks) < 3:
        frame = await client.recv()
        if frame["type"] == "ack":
            acks.append(frame["id"])
    assert acks == ids
    await asyncio.sleep(0.5)
    _, messages = await _rows(no_rasa, client.conversation_id or "")
    citizen = [m.text for m in messages if m.author == "citizen"]
    assert citizen == ["第0条", "第1条", "第2条"]


async def test_messages_stored_before_a_crash_are_answered_after_restart(no_rasa: Settings) -> None:
    """Accepted but unanswered (the hub died mid-turn): the next start answers it."""
    from hotline.conversations import ConversationStore
    from hotline.store.db import migrate

    engine = make_engine(no_rasa.database_url)
    await migrate(engine)
    store = ConversationStore(sessionmaker(engine))
    conversation, _token = await store.open("webchat", "zh")
    async with store.sessions() as session:
        session.add(
            Message(
                conversation_id=conversation.id,
                author="citizen",
                text="崩溃前收到的消息",
                client_id="before-crash-1",
            )
        )
        await session.commit()
    await engine.dispose()

    srv = TestServer(create_app(no_rasa), host="127.0.0.1", port=no_rasa.http_port)
    await srv.start_server()
    try:
        for _ in range(100):
            _, messages = await _rows(no_rasa, conversation.id)
            if messages[0].handled:
                break
            await asyncio.sleep(0.1)
        assert messages[0].handled
        assert [m.author for m in messages] == ["citizen", "system"]  # answered (Rasa is down)
    finally:
        await srv.close()
