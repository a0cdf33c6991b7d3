"""Citizens on each channel, driving its real transport, for the contract suite.

A driver is the test's half of one channel: it speaks the channel's wire protocol
exactly as a citizen's device or the carrier's gateway would. The suite runs the same
tests through every registered driver.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import aiosmtplib
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import HUB
from hotline.config import Settings
from hotline.lang import Lang
from hotline.ports import Capabilities
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import CallRecord, Message
from tests.channels.kannel import Kannel, Phone, post_inbound
from tests.channels.mail_fixtures import LIMIT as MAIL_LIMIT
from tests.channels.mail_fixtures import PASSWORD as MAIL_PASSWORD
from tests.channels.mail_fixtures import email_settings, new_address
from tests.chat import ChatClient
from tests.mail import CitizenMailbox, MailSystemThread, send_mail, wait_taken
from tests.mail import letter as mail_letter
from tests.sip_phone import SipPhone
from tests.telegram_api import shared_double
from voice_ivr.line import VoiceChannel
from voice_ivr.prompts import prompt

_NUMBERED = re.compile(r"^(\d{1,2})\. (.+)$", re.M)
# A button read out on the phone ("For X, press 1." / "X请按1。"), from the IVR's prompt.
_PRESS = {
    lang: re.compile(
        re.escape(prompt("press_for", lang, title="TITLE", n="9"))
        .replace("TITLE", r"(?P<title>[^\n]+?)")
        .replace("9", r"(?P<n>\d)")
    )
    for lang in ("zh", "en")
}


@dataclass(frozen=True)
class Reply:
    """One message the citizen received: its text and the buttons it offered."""

    text: str
    buttons: tuple[str, ...] = ()

    def numbered(self) -> tuple[str, ...]:
        """Button titles a text-only channel wrote as numbered lines."""
        return tuple(title for _n, title in _NUMBERED.findall(self.text))

    def pressed(self) -> tuple[str, ...]:
        """Button titles a phone read out as "for X, press N", in the order of N."""
        found = [(int(m["n"]), m["title"]) for r in _PRESS.values() for m in r.finditer(self.text)]
        assert [n for n, _ in found] == list(range(1, len(found) + 1)), self.text
        return tuple(title for _, title in found)


@dataclass(frozen=True)
class Lines:
    """What a citizen says at the contract's steps, as their channel can carry it.

    Text channels type the Mandarin of the original contract. A phone caller speaks
    English phrases its recognizer knows (pocketsphinx with the bot's English training
    phrases as grammar: no Mandarin model exists here) or presses keys. ``stored``
    fields are what the hub must store for a message; ``*_shows`` what an answer shows.
    """

    lang: Lang = "zh"
    hello: str = "你好"
    greeting_shows: str = "12309"
    check_case: str = "我想查一下我的案件进度"
    asks_code: str = "案件编号"
    # The redelivery test's two messages (a phone redelivers keys: its SIP INFO).
    first: str = "你好"
    first_stored: str = "你好"
    first_shows: str = "12309"
    second: str = "我想查一下我的案件进度"
    second_stored: str = "我想查一下我的案件进度"
    second_shows: str = "案件"
    question: str = "举报之后多久会有答复？"
    answer_shows: str = "7个工作日"
    ask_status: str = "查询案件进度"
    status_shows: str = "当前状态"
    check_button: str = "查询案件进度"
    report_button: str = "我要举报"
    to_person: str = "转人工"
    to_person_shows: str = "人工"
    english_check: str = "I want to check the status of my case"
    report: str = "我要举报"
    report_stored: str = "我要举报"
    bot_unavailable_shows: str = "智能助手暂时无法回复"


TEXT_LINES = Lines()
PHONE_LINES = Lines(
    lang="en",
    # Phrases pocketsphinx takes back exactly whatever the silence before them (checked
    # offline against espeak-ng at 7 leads; "hello" or "i want to check the status of my
    # case" are not: the recognizer's first utterance is sensitive to its alignment).
    hello="hello there",
    greeting_shows="12309",
    check_case="track my case",
    asks_code="case code",
    # At the main menu: 1 is a report (the menu's choice opens the bot's form, stored
    # as the menu's words); then 1 again is the form's first button, "Don't know".
    first="1",
    first_stored="Make a report (phone menu)",
    first_shows="name of the person you are reporting",
    second="1",
    second_stored="Don't know",
    second_shows="organization",
    question="how do i file a complaint",
    answer_shows="complaint",
    ask_status="lookup case status",
    english_check="track my case",
    status_shows="Status:",
    check_button="Check my case",
    report_button="Make a report",
    to_person="talk to a human",
    to_person_shows="member of staff",
    report="1",  # the menu's report key opens the bot's report form
    report_stored="Make a report (phone menu)",
    bot_unavailable_shows="assistant can't answer right now",
)


def joined(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


class Citizen(ABC):
    """One citizen on one channel."""

    channel: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    lines: ClassVar[Lines] = TEXT_LINES
    connector: ClassVar[bool] = True  # a folder of channel_connectors/ (not the phone line)
    marks: ClassVar[tuple[pytest.MarkDecorator, ...]] = ()
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


VOICE_SETTINGS = (
    "asterisk_root",
    "ari_url",
    "ari_password",
    "sip_port",
    "sip_trunk_password",
    "rtp_start",
    "voice_enabled",
)
_KEYS = re.compile(r"^[0-9*#]+$")
_RECORD_WAIT = 20.0  # seconds for the IVR to get to a step of the call
_TURN_WAIT = 40.0  # seconds for a turn: speech heard, the bot's answer, its prompt begun


class VoiceCitizen(Citizen):
    """A caller on the real phone line: a SIP phone through Asterisk's trunk.

    Keys are SIP INFO, speech is espeak-ng audio streamed as RTP and heard by the IVR's
    recognizer. What the caller hears is what the hub stored for the call's
    conversation (the IVR speaks exactly those replies, buttons read as "press N") and
    the prompts' audio: a turn is over when the replies are stored and their prompt has
    begun playing, so the next answer barges in while the IVR listens.
    """

    channel = "voice"
    capabilities = VoiceChannel.capabilities
    lines = PHONE_LINES
    connector = False
    marks = (pytest.mark.voice,)

    def __init__(self, server: TestServer, settings: Settings, phone: SipPhone, lang: Lang):
        self._server = server
        self._settings = settings
        self._phone = phone
        self._lang = lang
        self._folder = Path(tempfile.mkdtemp(prefix="voice-citizen-"))
        self._engine = make_engine(settings.database_url)
        self._seen = 0  # the last message of the conversation already taken as heard

    @classmethod
    def configure(cls, settings: Settings, request: pytest.FixtureRequest) -> Settings:
        asterisk: Settings = request.getfixturevalue("asterisk")
        return replace(settings, **{name: getattr(asterisk, name) for name in VOICE_SETTINGS})

    @classmethod
    async def arrive(
        cls, server: TestServer, settings: Settings, lang: str, request: pytest.FixtureRequest
    ) -> VoiceCitizen:
        """A caller dials the hotline and picks a language: now at the main menu."""
        caller = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
        phone = SipPhone(("127.0.0.1", settings.sip_port), caller, settings.sip_trunk_password)
        language: Lang = "en" if lang == "en" else "zh"
        citizen = cls(server, settings, phone, language)
        start = time.monotonic()
        await phone.call(settings.ivr_number)
        await phone.wait_sound(start)  # the welcome, offering the languages
        await citizen._press("2" if language == "en" else "1")
        await citizen._step("language")
        await phone.wait_sound(time.monotonic())  # the main menu
        return citizen

    # ----------------------------------------------------------- what it hears
    async def _record(self) -> CallRecord | None:
        async with sessionmaker(self._engine)() as session:
            query = select(CallRecord).where(CallRecord.caller == self._phone.caller)
            found: CallRecord | None = (await session.execute(query)).scalar_one_or_none()
            return found

    async def _step(self, name: str) -> CallRecord:
        """Wait for the call's CDR to show ``name`` (the IVR's path, written as it goes)."""
        async with asyncio.timeout(_RECORD_WAIT):
            while True:
                record = await self._record()
                if record is not None and name in [s["step"] for s in record.ivr_path]:
                    if record.conversation_id is not None:
                        self.conversation_id = record.conversation_id
                    return record
                await asyncio.sleep(0.05)

    async def _messages(self) -> list[Message]:
        if self.conversation_id is None:
            return []
        async with sessionmaker(self._engine)() as session:
            query = select(Message).where(
                Message.conversation_id == self.conversation_id, Message.id > self._seen
            )
            return list((await session.execute(query.order_by(Message.id))).scalars())

    def _reply(self, message: Message) -> Reply:
        """A stored reply as the IVR reads it out: its text, then "for X, press N"."""
        titles = [str(b["title"]) for b in message.buttons or ()]
        presses = [prompt("press_for", self._lang, title=t, n=n) for n, t in enumerate(titles, 1)]
        return Reply("\n".join([message.text, *presses]))

    async def _turn(self, since: float) -> list[Reply]:
        """The replies to the citizen's next stored message, once its turn is over and the
        caller hears them (a prompt begins after ``since``)."""
        try:
            async with asyncio.timeout(_TURN_WAIT):
                turn = await self._answered()
                await self._phone.wait_sound(since, timeout=_TURN_WAIT)
        except TimeoutError:
            raise AssertionError(
                f"no answer heard; the call so far: {await self._path()}"
            ) from None
        self._seen = turn[-1].id
        return [self._reply(m) for m in turn[1:] if m.author in ("bot", "system")]

    async def _answered(self) -> list[Message]:
        """The citizen's next message and its replies, once its turn is over."""
        while True:
            if self.conversation_id is None:
                record = await self._record()
                self.conversation_id = record.conversation_id if record else None
            rows = await self._messages()
            asked = [i for i, m in enumerate(rows) if m.author == "citizen"]
            if asked and rows[asked[0]].handled:
                turn = rows[asked[0] : asked[1] if len(asked) > 1 else None]
                if not any(m.author == "citizen" and not m.handled for m in turn):
                    return turn
            await asyncio.sleep(0.05)

    async def _path(self) -> str:
        """The call as far as the hotline recorded it (for failures): CDR steps, messages."""
        record = await self._record()
        steps = [(s["step"], s.get("value")) for s in record.ivr_path] if record else []
        self._seen, seen = 0, self._seen
        said = [(m.author, m.text[:60]) for m in await self._messages()]
        self._seen = seen
        return f"{steps} {said}"

    # -------------------------------------------------------------- talking
    async def _press(self, keys: str) -> None:
        await self._phone.keys(keys)

    async def _speak(self, text: str) -> None:
        # Speech is said once the prompt is over: the recognizer is listening by then,
        # while words said over a prompt's first moments may be cut (keys never are).
        await self._phone.wait_quiet()
        await self._phone.speak(text, self._folder)

    async def _to_bot(self) -> None:
        """From the main menu to the bot: legal questions, where the caller speaks first."""
        await self._press("4")
        await self._step("bot")
        await self._phone.wait_sound(time.monotonic())  # "please ask your question"

    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        """Keys (a code or PIN ends with #) or words; at the main menu, a key chooses
        there and words go to the bot's legal questions first."""
        keyed = bool(_KEYS.match(text))
        if self.conversation_id is None and not keyed:
            await self._to_bot()
        if keyed:
            await self._press(text + ("#" if len(text) > 1 and text.isdigit() else ""))
        else:
            await self._speak(text)
        return await self._turn(time.monotonic())

    async def leave_message(self, text: str) -> CallRecord:
        """After hours: say ``text`` after the tone and press #; once the IVR has saved
        it, the caller hears the case code and PIN (the call's record is returned)."""
        await self._step("voicemail")
        await self._speak(text)  # once the prompt and the tone are over
        await self._press("#")
        record = await self._step("message_saved")
        await self._phone.wait_sound(time.monotonic())  # "your case code is ..."
        return record

    async def hears_agent(self) -> CallRecord:
        """Once an agent's phone answered, the caller hears them (the bridge's audio)."""
        record = await self._step("agent_answered")
        await self._phone.wait_sound(time.monotonic())
        return record

    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        titles = reply.pressed()
        assert title in titles, (title, reply.text)
        return await self.say(str(titles.index(title) + 1))

    async def redeliver(self) -> None:
        """The last key's SIP INFO again, byte for byte: Asterisk answers it once more as
        the retransmission it is, and the key counts once."""
        answer = await self._phone.retransmit_last_key()
        assert answer.status == 200, (answer.status, answer.reason)

    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        async with asyncio.timeout(timeout):
            while True:
                for message in await self._messages():
                    self._seen = message.id
                    reply = self._reply(message)
                    if message.author != "citizen" and match(reply):
                        return reply
                await asyncio.sleep(0.05)

    async def _refused(self, body: bytes) -> str:
        """An INFO in the call's dialog with ``body`` as its dtmf-relay: Asterisk's error."""
        data, cseq = self._phone.info("")
        data = data.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body))
        answer = await self._phone.transact(data + body, cseq, "INFO")
        assert 400 <= answer.status < 600, (answer.status, answer.reason)
        return f"{answer.status} {answer.reason}"

    async def unstorable(self, text: str) -> str:
        """The text as the body of a key's INFO: no key, and nothing Asterisk can read."""
        return await self._refused(text.encode("utf-8", "surrogatepass"))

    async def malformed(self) -> list[str]:
        return [
            await self._refused(b"Signal=ZZ\r\nDuration=abc\r\n"),  # no key
            await self._refused(b"\x00\x01\xff" * 100),  # binary garbage
            await self._refused(b"Signal=" + b"5" * 3000 + b"\r\n"),  # an oversize signal
            await self._refused(b"X" * 60000),  # an oversize datagram (60 kB)
        ]

    async def close(self) -> None:
        await self._phone.close()
        await self._engine.dispose()


DRIVERS: dict[str, type[Any]] = {
    "webchat": WebChatCitizen,
    "sms": SmsCitizen,
    "voice": VoiceCitizen,
}


def with_channel(settings: Settings, channel: str) -> Settings:
    if not DRIVERS[channel].connector:
        return settings
    channels = settings.channels if channel in settings.channels else (*settings.channels, channel)
    return replace(settings, channels=channels)


class TelegramCitizen(Citizen):
    """A Telegram user, through the Bot API double (``tests/telegram_api.py``): the
    double delivers their updates to the hub's webhook with the secret header, as
    Telegram's servers do, and the replies are what the hub sent by ``sendMessage``.
    Buttons are native (inline keyboards; a press is a callback query)."""

    channel = "telegram"
    capabilities = Capabilities(media="chat", buttons=True, max_length=4096)

    def __init__(self, server: TestServer, base: str, user: dict[str, Any]) -> None:
        self._server = server
        self._base = base  # the double's citizen side for this test's bot
        self._user = user
        self._http = aiohttp.ClientSession()
        self._seen = 0  # the last bot message already taken as received
        self._last_update: int | None = None
        self._sent: list[dict[str, Any]] = []  # what the bot sent, with message ids

    @classmethod
    def configure(cls, settings: Settings, request: pytest.FixtureRequest) -> Settings:
        """A bot of its own on the shared double, in webhook mode on the hub's port."""
        double = shared_double()
        token = f"{secrets.randbelow(10**9) + 1}:{secrets.token_urlsafe(30)}"
        section = {
            "api_url": double.url,
            "token": token,
            "mode": "webhook",
            "webhook_secret": secrets.token_urlsafe(24),
        }
        sections = {**settings.channel_sections, "telegram": section}
        return replace(settings, channel_sections=sections)

    @classmethod
    async def arrive(
        cls, server: TestServer, settings: Settings, lang: str, request: pytest.FixtureRequest
    ) -> TelegramCitizen:
        """A user opens the bot: the conversation starts when they write."""
        section = settings.channel_sections["telegram"]
        base = f"{section['api_url']}/_double/{section['token']}"
        user = {
            "id": 10_000 + secrets.randbelow(10**9),
            "language_code": "en" if lang == "en" else "zh-hans",
        }
        return cls(server, base, user)

    async def _post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._http.post(f"{self._base}/{action}", json=body) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            return answer

    async def _received(self, wait: float = 0) -> list[Reply]:
        url = f"{self._base}/chats/{self._user['id']}?after={self._seen}&wait={wait}"
        async with self._http.get(url) as response:
            found = (await response.json())["messages"]
        self._sent.extend(found)
        if found:
            self._seen = found[-1]["seq"]
        return [Reply(m["text"], tuple(b["text"] for b in m["buttons"])) for m in found]

    async def _turn(self, answer: dict[str, Any]) -> list[Reply]:
        assert answer.get("status") == 200, answer  # the webhook's answer
        self._last_update = answer["update_id"]
        await self._server.app[HUB].drain()
        current = await self._server.app[HUB].conversations.latest(
            "telegram", str(self._user["id"])
        )
        self.conversation_id = current.id if current is not None else self.conversation_id
        return await self._received()

    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        return await self._turn(await self._post("send", {"user": self._user, "text": text}))

    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        for sent in reversed(self._sent):
            for button in sent["buttons"]:
                if button["text"] == title:
                    body = {
                        "user": self._user,
                        "message_id": sent["message_id"],
                        "data": button["callback_data"],
                    }
                    return await self._turn(await self._post("press", body))
        raise AssertionError(f"no button {title!r} was offered")

    async def redeliver(self) -> None:
        """Telegram sends an update again when it missed the webhook's answer."""
        assert self._last_update is not None
        answer = await self._post("redeliver", {"update_id": self._last_update})
        assert answer["status"] == 200 and answer["answer"]["duplicate"] is True, answer
        await self._server.app[HUB].drain()
        assert await self._received() == []

    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        async with asyncio.timeout(timeout):
            while True:
                for reply in await self._received(wait=min(timeout, 5)):
                    if match(reply):
                        return reply

    @staticmethod
    def _refused(answer: dict[str, Any]) -> str:
        assert 400 <= answer["status"] < 500, answer
        body = answer["answer"]
        return f"{body['error']}: {body['description']}"

    async def unstorable(self, text: str) -> str:
        """The text in a well-formed update (JSON escapes carry lone surrogates and NUL)."""
        return self._refused(await self._post("send", {"user": self._user, "text": text}))

    async def malformed(self) -> list[str]:
        uid = self._user["id"]
        bodies = [
            "{not json",
            "[" * 20000 + "]" * 20000,
            '"hello"',
            '{"update_id": "1", "message": {}}',
            json.dumps(
                {
                    "update_id": 10**6,
                    "message": {"message_id": 1, "date": 0, "chat": {"id": "x", "type": "private"}},
                }
            ),
            json.dumps(
                {
                    "update_id": 10**6 + 1,
                    "message": {
                        "message_id": 99_999,
                        "date": 0,
                        "chat": {"id": uid, "type": "private"},
                        "from": {"id": uid, "is_bot": False, "first_name": "x"},
                        "text": ["not", "a", "string"],
                    },
                }
            ),
            "x" * 300_000,  # over the webhook's body limit
        ]
        errors = [self._refused(await self._post("raw", {"body": b})) for b in bodies]
        oversize = await self._post("send", {"user": self._user, "text": "长" * 3000})
        errors.append(self._refused(oversize))
        return errors

    async def close(self) -> None:
        await self._http.close()


DRIVERS["telegram"] = TelegramCitizen


class EmailCitizen(Citizen):
    """A citizen's mail client on the session's mail system (Dovecot and the SMTP relay):
    letters go in over SMTP and each answers the hotline's last reply (its thread); the
    replies are read from the citizen's own mailbox over IMAP. A turn ends when the
    hotline's mailbox holds nothing unseen (the channel marks a letter seen once stored)
    and the hub has answered. Letters carry no buttons: a choice is written as its
    number, as on SMS."""

    channel = "email"
    capabilities = Capabilities(
        media="deferred", buttons=False, attachments=True, address="email", letters=True
    )

    def __init__(self, server: TestServer, mail: MailSystemThread, hotline: str) -> None:
        self._server = server
        self._mail = mail
        self._hotline = hotline
        self.address = new_address("citizen")
        self._box = CitizenMailbox(mail.imap_port, self.address, MAIL_PASSWORD)
        self._last_reply: EmailMessage | None = None
        self._references: list[str] = []
        self._last_sent: EmailMessage | None = None

    @classmethod
    def configure(cls, settings: Settings, request: pytest.FixtureRequest) -> Settings:
        return email_settings(settings, request.getfixturevalue("mail_system"))

    @classmethod
    async def arrive(
        cls, server: TestServer, settings: Settings, lang: str, request: pytest.FixtureRequest
    ) -> EmailCitizen:
        mail = request.getfixturevalue("mail_system")
        citizen = cls(server, mail, settings.channel_sections["email"]["address"])
        await citizen._box.connect()
        return citizen

    def _letter(self, text: str) -> EmailMessage:
        extra: dict[str, Any] = {}
        if self._last_reply is not None:
            extra["in_reply_to"] = str(self._last_reply["Message-ID"]).strip()
            extra["references"] = self._references[-10:]
        return mail_letter(self.address, self._hotline, "", text, **extra)

    async def _send_raw(self, raw: bytes) -> None:
        await aiosmtplib.send(
            raw,
            sender=self.address,
            recipients=[self._hotline],
            hostname="127.0.0.1",
            port=self._mail.smtp_port,
            start_tls=False,
        )

    async def _settle(self) -> None:
        await wait_taken(self._mail.imap_port, self._hotline, MAIL_PASSWORD)
        await self._server.app[HUB].drain()

    async def _received(self, wait: float = 0.3) -> list[Reply]:
        replies = []
        while True:
            try:
                message = await self._box.next_message(wait)
            except TimeoutError:
                return replies
            self._take(message)
            replies.append(Reply(message.get_content().strip()))

    def _take(self, message: EmailMessage) -> None:
        self._last_reply = message
        self._references.append(str(message["Message-ID"]).strip())

    async def _turn(self) -> list[Reply]:
        await self._settle()
        current = await self._server.app[HUB].conversations.latest("email", self.address)
        self.conversation_id = current.id if current is not None else self.conversation_id
        return await self._received()

    async def say(self, text: str, *, message_id: str | None = None) -> list[Reply]:
        letter = self._letter(text)
        if self._last_sent is not None:
            self._references.append(str(self._last_sent["Message-ID"]).strip())
        self._last_sent = letter
        await send_mail(self._mail.smtp_port, letter)
        return await self._turn()

    async def choose(self, reply: Reply, title: str) -> list[Reply]:
        titles = reply.numbered()
        assert title in titles, (title, reply.text)
        return await self.say(str(titles.index(title) + 1))

    async def redeliver(self) -> None:
        """The same letter again (a client's resend, a mailbox handing it over twice)."""
        assert self._last_sent is not None
        await send_mail(self._mail.smtp_port, self._last_sent)
        assert await self._turn() == []

    async def expect(self, match: Callable[[Reply], bool], timeout: float = 15) -> Reply:
        message = await self._box.next_message(
            timeout, lambda m: match(Reply(m.get_content().strip()))
        )
        self._take(message)
        return Reply(message.get_content().strip())

    async def _told(self, raw: bytes) -> str:
        """Send a raw letter the channel must refuse; the notice the citizen gets."""
        await self._send_raw(raw)
        await self._settle()
        message = await self._box.next_message(15)
        return message.get_content().strip()

    def _raw(self, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
        head = (
            f"From: {self.address}\r\nTo: {self._hotline}\r\nSubject: \r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        )
        return head.encode() + body + b"\r\n"

    async def unstorable(self, text: str) -> str:
        """The text written as its bytes would be (a lone surrogate as CESU-8, a NUL)."""
        return await self._told(self._raw(text.encode("utf-8", "surrogatepass")))

    async def malformed(self) -> list[str]:
        errors = [
            # a letter with no text at all, only an unreadable part
            await self._told(
                self._raw(
                    b"--b\r\nContent-Type: application/octet-stream\r\n\r\n\x01\x02\r\n--b--",
                    'multipart/mixed; boundary="b"',
                )
            ),
        ]
        try:  # over the mail system's size limit: refused at the door
            await send_mail(
                self._mail.smtp_port,
                mail_letter(self.address, self._hotline, "x", "长" * MAIL_LIMIT),
            )
        except aiosmtplib.SMTPResponseException as exc:
            errors.append(f"{exc.code} {exc.message}")
        else:
            errors.append("")
        return errors

    async def close(self) -> None:
        await self._box.close()


DRIVERS["email"] = EmailCitizen
