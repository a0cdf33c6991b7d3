"""A web chat client for tests and benchmarks: speaks /ws/chat like the widget does."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp


class ChatClient:
    """One citizen on the web chat. ``say`` returns the replies of one turn.

    The hub brackets each turn with ``typing`` on/off frames, so a turn's end is known
    exactly instead of guessed with a sleep.
    """

    def __init__(
        self, base_url: str, lang: str = "zh", origin: str | None = None, unit: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unit = unit
        self.lang = lang
        self.origin = origin
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.conversation_id: str | None = None
        self.resume: str | None = None
        self.frames: list[dict[str, Any]] = []
        self.greeting: list[dict[str, Any]] = []

    async def connect(self, resume: str | None = None) -> dict[str, Any]:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        headers = {"Origin": self.origin} if self.origin else {}
        url = self.base_url.replace("http", "ws", 1) + "/ws/chat"
        self.ws = await self.session.ws_connect(url, headers=headers)
        hello: dict[str, Any] = {"type": "hello", "lang": self.lang}
        if self.unit:
            hello["unit"] = self.unit
        if resume or self.resume:
            hello["resume"] = resume or self.resume
        await self.ws.send_json(hello)
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        self.conversation_id = welcome["conversation_id"]
        self.resume = welcome["resume"]
        if not welcome["resumed"]:  # a new conversation opens with the bot's greeting turn
            self.greeting = await self._turn()
        return welcome

    async def _turn(self, timeout: float = 30) -> list[dict[str, Any]]:
        """The message frames up to the end of the current turn (typing off)."""
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] == "typing" and not frame["on"]:
                    return replies
                if frame["type"] == "message":
                    replies.append(frame)

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type} {msg.data!r}")
        frame: dict[str, Any] = json.loads(msg.data)
        self.frames.append(frame)
        return frame

    async def send(self, text: str, payload: str | None = None, msg_id: str | None = None) -> str:
        assert self.ws is not None
        msg_id = msg_id or str(uuid.uuid4())
        frame: dict[str, Any] = {"type": "message", "id": msg_id, "text": text}
        if payload:
            frame["payload"] = payload
        await self.ws.send_json(frame)
        return msg_id

    async def say(
        self, text: str, payload: str | None = None, msg_id: str | None = None, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Send one message; return the message frames of its turn (after the ack)."""
        msg_id = await self.send(text, payload, msg_id)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] == "error":
                    raise AssertionError(f"error frame: {frame}")
                if frame["type"] == "ack" and frame["id"] == msg_id:
                    break
        if frame.get("duplicate"):
            return []
        return await self._turn(timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        self.ws = None
        self.session = None


def texts(replies: list[dict[str, Any]]) -> str:
    return "\n".join(r.get("text", "") for r in replies)
