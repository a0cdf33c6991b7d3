"""Hostile frames on /ws/chat: each gets an error frame, the socket stays up, nothing is lost.

The real hub on SQLite and PostgreSQL; no Rasa (its URL points at a port nobody listens
on), which the chat survives by design. Every frame below once closed the socket with
1006 or lost a message: deep nesting (RecursionError in json.loads), lone surrogates in
the text (the SQLite driver could not encode them), NUL (PostgreSQL refuses it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, text

from hotline.config import Settings
from hotline.logs import JsonFormatter
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Message
from hotline.web import create_app
from tests.chat import ChatClient
from tests.conftest import free_port
from tests.hostile import hostile_json_documents, hostile_values, unstorable_texts

# Fields of each frame type, and whether null is a valid value for them.
FIELDS: dict[str, dict[str, bool]] = {
    "hello": {"lang": True, "resume": True, "unit": True},
    "message": {"id": False, "text": False, "payload": True},
    "lang": {"lang": False},
    "ping": {},
}


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    # No rate limit in the way: every frame must reach the checks it is aimed at.
    return replace(
        settings,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=2.0,
        ws_messages_per_minute=10_000,
    )


@pytest.fixture
async def server(fuzz_settings: Settings) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(fuzz_settings), host="127.0.0.1", port=fuzz_settings.http_port)
    await srv.start_server()
    yield srv
    await srv.close()


def base_frame(kind: str) -> dict[str, Any]:
    if kind == "hello":
        return {"type": "hello", "lang": "zh"}
    if kind == "message":
        return {"type": "message", "id": str(uuid.uuid4()), "text": "您好"}
    if kind == "lang":
        return {"type": "lang", "lang": "en"}
    return {"type": "ping"}


def hostile_frames(max_frame: int) -> Iterator[tuple[str, str | bytes]]:
    """(label, frame): every frame here must be answered with an error frame."""
    for label, raw in hostile_json_documents():
        yield f"document: {label}", raw
    deep = "[" * 20_000 + "]" * 20_000
    yield "deep text", '{"type": "message", "id": "abcdefgh-deep", "text": ' + deep + "}"
    yield (
        "deep payload",
        '{"type": "message", "id": "abcdefgh-dp", "text": "x", "payload": ' + (deep + "}"),
    )
    yield "NaN text", '{"type": "message", "id": "abcdefgh-nan", "text": NaN}'
    yield "huge number id", '{"type": "message", "id": ' + "9" * 4_000 + ', "text": "x"}'
    yield "binary", b"\x00\x01\xff"
    yield "binary JSON", json.dumps({"type": "ping"}).encode()
    # Long strings stay under the frame cap: the point is the field check, not the cap.
    long = max_frame - 200
    for value in hostile_values(long=long):
        yield f"type={_short(value)}", json.dumps({"type": value})
    for kind, fields in FIELDS.items():
        for field, nullable in fields.items():
            for value in hostile_values(long=long):
                if value is None and nullable:
                    continue  # null means "absent" for optional fields: not hostile
                frame = base_frame(kind)
                frame[field] = value
                yield f"{kind}.{field}={_short(value)}", json.dumps(frame)
    for bad in unstorable_texts():  # inside otherwise ordinary text, too
        frame = base_frame("message")
        frame["text"] = f"我要举报{bad}县长"
        yield f"message.text with {bad!r}", json.dumps(frame)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


async def send(ws: aiohttp.ClientWebSocketResponse, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)


async def until_pong(chat: ChatClient) -> list[dict[str, Any]]:
    """Send a ping; the frames that arrive before its pong (the socket must stay open)."""
    assert chat.ws is not None
    await chat.ws.send_json({"type": "ping"})
    seen: list[dict[str, Any]] = []
    while True:
        frame = await chat.recv(timeout=15)
        if frame["type"] == "pong":
            return seen
        seen.append(frame)


async def stored(settings: Settings, conversation_id: str) -> list[Message]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            )
            return list(rows.scalars())
    finally:
        await engine.dispose()


async def test_hostile_frames_get_errors_and_nothing_is_lost(
    server: TestServer, fuzz_settings: Settings
) -> None:
    chat = ChatClient(str(server.make_url("/")))
    await chat.connect()
    try:
        first = f"第一条消息 {uuid.uuid4().hex}"
        await chat.say(first)  # stored, and its turn (Rasa is down: queued) is over
        frames = list(hostile_frames(fuzz_settings.ws_max_frame_bytes))
        assert len(frames) > 150
        for label, frame in frames:
            await send(chat.ws, frame)  # type: ignore[arg-type]
            answers = await until_pong(chat)
            errors = [a for a in answers if a["type"] == "error"]
            assert len(errors) == 1, (label, answers)
            error = errors[0]
            assert error["code"] != "internal", (label, error)
            assert isinstance(error["message"], str) and error["message"], (label, error)
            # Nothing was accepted or opened by a hostile frame.
            assert not [a for a in answers if a["type"] in ("ack", "welcome")], (label, answers)
            if label == f"message.text={_short('x' * (fuzz_settings.ws_max_frame_bytes - 200))}":
                # Something the citizen can fix is explained in their language.
                assert error["code"] == "text_too_long" and "消息太长" in error["message"]
        # The same socket still carries the same conversation.
        last = f"最后一条消息 {uuid.uuid4().hex}"
        await chat.say(last)
        rows = await stored(fuzz_settings, chat.conversation_id or "")
        citizen = [m.text for m in rows if m.author == "citizen"]
        assert citizen == [first, last]
    finally:
        await chat.close()


async def test_a_failure_inside_the_hub_is_an_error_frame_not_a_dead_socket(
    server: TestServer, fuzz_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Storage failing under a frame (here: its table gone) answers ``internal``.

    The socket stays up, the message can be sent again once storage is back, and the
    log has the traceback but not the citizen's words (SQLAlchemy prints parameters).
    """
    chat = ChatClient(str(server.make_url("/")))
    await chat.connect()
    engine = make_engine(fuzz_settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE message RENAME TO message_away"))
        canary = f"举报内容 canary-{uuid.uuid4().hex}"
        message_id = str(uuid.uuid4())
        with caplog.at_level(logging.INFO):
            await chat.send(canary, msg_id=message_id)
            answers = await until_pong(chat)
        errors = [a for a in answers if a["type"] == "error"]
        assert [e["code"] for e in errors] == ["internal"], answers
        assert "id" not in errors[0]  # no id: the widget keeps the message to send again
        failed = [r for r in caplog.records if r.getMessage() == "chat frame failed"]
        assert failed and failed[0].exc_info is not None
        formatter = JsonFormatter()
        assert "Traceback" in json.loads(formatter.format(failed[0]))["exc"]
        logged = "\n".join(formatter.format(r) for r in caplog.records)
        assert "canary" not in logged
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE message_away RENAME TO message"))
        # The widget sends it again; the socket has stayed open all along.
        for _attempt in range(3):  # a pooled connection may first report the schema change
            await chat.send(canary, msg_id=message_id)
            answers = await until_pong(chat)
            if any(a["type"] == "ack" for a in answers):
                break
            await asyncio.sleep(0.2)
        assert {"type": "ack", "id": message_id} in answers, answers
        rows = await stored(fuzz_settings, chat.conversation_id or "")
        assert [m.text for m in rows if m.author == "citizen"] == [canary]
    finally:
        await engine.dispose()
        await chat.close()
