"""Citizens on each channel, driving its real transport, for the contract suite.

A driver is the test's half of one channel: it speaks the channel's wire protocol
exactly as a citizen's device or the carrier's gateway would. The suite runs the same
tests through every registered driver.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
from aiohttp.test_utils import TestServer

from hotline.appkeys import HUB
from hotline.config import Settings
from hotline.ports import Capabilities
from tests.channels.kannel import Kannel, Phone, post_inbound
from tests.chat import ChatClient

_NUMBERED = re.compile(r"^(\d{1,2})\. (.+)$", re.M)


@dataclass(frozen=True)
class Reply:
    """One message the citizen received: its text and the buttons it offered."""

    text: str
    buttons: tuple[str, ...] = ()

    def numbered(self) -> tuple[str, ...]:
        """Button titles a text-only channel wrote as numbered lines."""
        return tuple(title for _n, title in _NUMBERED.findall(self.text))


def joined(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


class Citizen(ABC):
    """One citizen on one channel."""

    channel: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    conversation_id: str | None = None

    @abstractmethod
    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        """Send one message; the replies of the turn it started."""

    @abstractmethod
    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        """Press the button called ``title`` (natively, or by its number)."""

    @abstractmethod
    async def redeliver(self) -> None:
        """Send the last message again, with the same transport id (a retry)."""

    @abstractmethod
    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        """Wait for a message the citizen did not ask for (an agent's reply)."""

    @abstractmethod
    async def unstorable(self, text: str) -> str:
        """Send a well-formed message whose text cannot be stored; the error given."""

    @abstractmethod
    async def malformed(self) -> list[str]:
        """Send transport-level garbage and an oversize message; the errors given."""

    async def close(self) -> None:
        """Let go of the transport."""


class WebChatCitizen(Citizen):
    channel = "webchat"
    capabilities = Capabilities(media="chat", buttons=True)

    def __init__(self, base_url: str, lang: str) -> None:
        self._client = ChatClient(base_url, lang)
        self._last: tuple[str, str] | None = None

    @classmethod
    def configure(cls, settings: Settings, request: pytest.FixtureRequest) -> Settings:
        """Settings for a hub serving this channel (session resources via ``request``)."""
        return settings

    @classmethod
    async def arrive(
        cls, server: TestServer, settings: Settings, lang: str, request: pytest.FixtureRequest
    ) -> WebChatCitizen:
        """A citizen opens the chat: the conversation starts with the bot's greeting."""
        citizen = cls(str(server.make_url("")).rstrip("/"), lang)
        await citizen._client.connect()
        citizen.conversation_id = citizen._client.conversation_id
        return citizen

    @staticmethod
    def _replies(frames: list[dict[str, Any]]) -> list[Reply]:
        return [
            Reply(f.get("text", ""), tuple(b["title"] for b in f.get("buttons") or ()))
            for f in frames
        ]

    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        message_id = message_id or str(uuid.uuid4())
        self._last = (message_id, text)
        return self._replies(await self._client.say(text, msg_id=message_id))

    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        frames = [f for f in self._client.frames if f.get("type") == "message"]
        for frame in reversed(frames):
            for button in frame.get("buttons") or ():
                if button["title"] == title:
                    return self._replies(await self._client.say(title, payload=button["payload"]))
        raise AssertionError(f"no button {title!r} was offered")

    async def redeliver(self) -> None:
        assert self._last is not None
        message_id, text = self._last
        assert await self._client.say(text, msg_id=message_id) == []  # acked as a duplicate
        assert self._client.frames[-1] == {"type": "ack", "id": message_id, "duplicate": True}

    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        while True:
            frame = await self._client.recv(timeout)
            if frame["type"] == "message":
                reply = self._replies([frame])[0]
                if match(reply):
                    return reply

    async def _error(self) -> str:
        while True:
            frame = await self._client.recv(10)
            if frame["type"] == "error":
                return f"{frame['code']}: {frame['message']}"

    async def unstorable(self, text: str) -> str:
        assert self._client.ws is not None
        await self._client.ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})
        return await self._error()

    async def malformed(self) -> list[str]:
        ws = self._client.ws
        assert ws is not None
        errors = []
        for raw in ("[" * 20000 + "]" * 20000, '{"type": "message"', "null", '"hello"'):
            await ws.send_str(raw)
            errors.append(await self._error())
        await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": "长" * 5000})
        errors.append(await self._error())
        return errors

    async def close(self) -> None:
        await self._client.close()


class SmsCitizen(Citizen):
    """A phone on Kannel's fake SMSC; hostile input is what smsbox would post."""

    channel = "sms"
    capabilities = Capabilities(media="deferred", buttons=False)

    def __init__(self, server: TestServer, phone: Phone) -> None:
        self._server = server
        self._phone = phone

    @classmethod
    def configure(cls, settings: Settings, request: pytest.FixtureRequest) -> Settings:
        kannel: Kannel = request.getfixturevalue("kannel")
        sections = {**settings.channel_sections, "sms": kannel.section()}
        return replace(settings, channel_sections=sections)

    @classmethod
    async def arrive(
        cls, server: TestServer, settings: Settings, lang: str, request: pytest.FixtureRequest
    ) -> SmsCitizen:
        """A citizen's phone: the conversation starts when they write."""
        phone = Phone(server, request.getfixturevalue("kannel"))
        await phone.__aenter__()
        return cls(server, phone)

    async def _find_conversation(self) -> None:
        conversations = self._server.app[HUB].conversations
        current = await conversations.latest("sms", self._phone.number)
        self.conversation_id = current.id if current is not None else self.conversation_id

    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        replies = [Reply(t) for t in await self._phone.say(text)]
        await self._find_conversation()
        return replies

    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        titles = reply.numbered()
        assert title in titles, (title, reply.text)
        return await self.say(str(titles.index(title) + 1))

    async def redeliver(self) -> None:
        """Kannel re-posts a message whose answer it missed: same message id."""
        rows = await self._server.app[HUB].conversations.history(self.conversation_id or "")
        last = [m for m in rows if m.author == "citizen"][-1]
        assert last.client_id is not None and last.client_id.startswith("k-")
        status, body = await post_inbound(
            self._server,
            self._phone.number,
            last.text.encode("utf-16-be"),
            coding="2",
            charset="UTF-16BE",
            msg_id=last.client_id[2:],
        )
        assert (status, body.get("duplicate")) == (200, True), body
        await self._server.app[HUB].drain()

    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        while True:
            reply = Reply((await self._phone.receive(timeout))["text"])
            if match(reply):
                return reply

    async def _refused(self, body: bytes, **params: str) -> str:
        status, answer = await post_inbound(self._server, self._phone.number, body, **params)
        assert 400 <= status < 500, (status, answer)
        return f"{answer['error']}: {answer.get('message', '')}"

    async def unstorable(self, text: str) -> str:
        raw = text.encode("utf-16-be", "surrogatepass")
        return await self._refused(raw, coding="2", charset="UTF-16BE", msg_id=str(uuid.uuid4()))

    async def malformed(self) -> list[str]:
        return [
            await self._refused("你好".encode("utf-16-be")[:-1], coding="2"),  # odd UCS-2
            await self._refused(b"\xff\xfe\xfd"),  # not UTF-8
            await self._refused(b"\x05\x00binary", coding="1"),  # an 8-bit binary SMS
            await self._refused("长".encode("utf-16-be") * 2100, coding="2"),  # over the limit
        ]

    async def close(self) -> None:
        await self._phone.__aexit__(None, None, None)


DRIVERS: dict[str, type[Any]] = {"webchat": WebChatCitizen, "sms": SmsCitizen}


def with_channel(settings: Settings, channel: str) -> Settings:
    channels = settings.channels if channel in settings.channels else (*settings.channels, channel)
    return replace(settings, channels=channels)
