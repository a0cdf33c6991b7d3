"""What the IVR can do on a call: the primitives every phase of a call is built from.

A ``Call`` is one caller's line; ``Calls`` holds the calls in progress and does the
primitive operations on one: speak or play (a key or speech stops a prompt), read keys
and digits, ask (a key, or speech where the caller's language has a recognizer), wait
for the call's next event, open the call's conversation through the ``Inbox``, and
append a step to the call's CDR (``call_record``, the channel's own table). The menus
(``ivr``), the bot's speech turns (``dialogue``), the way to a person (``agents``) and
voicemail (``voicemail``) are built on these and import this module; it imports none
of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.acd.service import PhoneSide
from hotline.lang import Lang
from hotline.ports import Inbox
from hotline.store.models import CallRecord, utcnow
from voice_ivr.ari import AriClient, AriError
from voice_ivr.asr import AsrEngine
from voice_ivr.errors import Hangup, NeedsAgent
from voice_ivr.listen import CallListener, ListenerError
from voice_ivr.recorder import Recorder
from voice_ivr.tts import TtsError, asterisk_media

log = logging.getLogger(__name__)

CHANNEL = "voice"  # the channel's name: its conversations and contacts are "voice" ones
FIRST_KEY_TIMEOUT = 6.0  # seconds of silence after a prompt before a reprompt
NEXT_KEY_TIMEOUT = 5.0  # between digits of a code


class Speaker(Protocol):
    async def synthesize(self, text: str, lang: Lang) -> Path: ...

    def fallback_prompt(self, lang: Lang) -> Path: ...


Transcriber = Callable[[Path, Lang], Awaitable[str | None]]


@dataclass(frozen=True)
class Heard:
    """A caller's answer: a key, or what they said (empty: speech that matched nothing)."""

    key: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Speech:
    """Recognizers by language and what the listener needs to reach the call's audio."""

    engines: dict[str, AsrEngine]
    listener: Callable[[], CallListener]


class Desk(Protocol):
    """What calls need of the ACD (``hotline.acd.service.AcdService``) beyond the
    ``Inbox``: its phone side. An agent's phone answering is the accept, not answering
    the reject; ``push`` tells the agent's console how the call goes."""

    push: Any
    phones: PhoneSide | None

    async def accept(self, conversation_id: str, user_id: str) -> Any: ...

    async def reject(self, conversation_id: str, user_id: str) -> bool: ...


@dataclass
class Call:
    channel_id: str
    caller: str
    dialled: str
    record_id: str
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    keys: list[str] = field(default_factory=list)
    lang: Lang = "zh"
    playing: str | None = None
    gone: bool = False
    conversation_id: str | None = None
    disposition: str = "completed"
    # Events that came while a prompt played or keys were read (offers, agent phones):
    # kept for the phase that handles them.
    later: list[dict[str, Any]] = field(default_factory=list)
    state: str = "ivr"  # for the console: ivr, bot, queued, ringing, talking, survey
    bot_turns: int = 0  # answers given to the bot; the first prompt says how to talk to it
    # Handed to a person and not answered by one yet: hanging up now is abandoning.
    handed_off: bool = False
    # The caller's answer is with the hub and the bot's turn has not ended yet.
    turn_pending: bool = False


class Calls:
    """The calls in progress, and the primitive operations on one."""

    def __init__(
        self,
        ari: AriClient,
        sessions: async_sessionmaker[AsyncSession],
        inbox: Inbox,
        speaker: Speaker,
        *,
        root: Path | None,
        desk: Desk | None = None,
        recorder: Recorder | None = None,
        transcriber: Transcriber | None = None,
        speech: Speech | None = None,
        outbound_endpoint: str = "trunk",
        phrases: dict[str, list[str]] | None = None,
    ) -> None:
        self.ari = ari
        self._sessions = sessions  # the channel's own tables: CDRs, recordings
        self.inbox = inbox  # conversations, tickets, everything else: the core's
        self._speaker = speaker
        self._root = root  # prompt files live inside the Asterisk root
        self.desk = desk
        self.recorder = recorder
        self._transcriber = transcriber
        self._speech = speech
        self.outbound_endpoint = outbound_endpoint  # PJSIP endpoint for outside numbers
        # Per language: the bot's phrases a grammar-only recognizer can hear (its words).
        self.phrases = phrases or {}
        self._listeners: dict[str, CallListener] = {}  # caller channel id -> its listener
        self._calls: dict[str, Call] = {}
        self._legs: dict[str, Call] = {}  # agent phone channel id -> the caller's call
        self._by_conversation: dict[str, Call] = {}

    @property
    def speaker(self) -> Speaker:
        return self._speaker

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    # ---------------------------------------------------------- registries
    async def notify(self, conversation_id: str, event: dict[str, Any]) -> bool:
        """Hand a hub or ACD event (offer, state, position...) to the call it concerns."""
        call = self._by_conversation.get(conversation_id)
        if call is None:
            return False
        await call.events.put(event)
        return True

    def leg_opened(self, leg_id: str, call: Call) -> None:
        self._legs[leg_id] = call

    def leg_closed(self, leg_id: str) -> None:
        self._legs.pop(leg_id, None)

    def conversation_opened(self, call: Call) -> None:
        if call.conversation_id is not None:
            self._by_conversation[call.conversation_id] = call

    def call_state(self, conversation_id: str) -> str | None:
        """ivr, bot, queued, ringing, talking or survey, for a call still on the line."""
        call = self._by_conversation.get(conversation_id)
        return call.state if call is not None else None

    def speech_summary(self) -> str:
        """Which languages callers may speak in, for /healthz."""
        engines = self._speech.engines if self._speech is not None else {}
        return "; ".join(
            f"{lang}: {engines[lang].name}" if lang in engines else f"{lang}: keys only (no model)"
            for lang in ("zh", "en")
        )

    async def transcribe(self, wav: Path, lang: Lang) -> str | None:
        """What a recording says, if a model for ``lang`` is installed."""
        if self._transcriber is None:
            return None
        try:
            return await self._transcriber(wav, lang)
        except Exception:
            log.exception("transcription failed")
            return None

    # ---------------------------------------------------------------- speech
    def engine(self, lang: Lang) -> AsrEngine | None:
        """The recognizer for callers speaking ``lang``; ``None``: keys only."""
        return self._speech.engines.get(lang) if self._speech is not None else None

    async def ask(
        self,
        call: Call,
        text: str,
        *,
        grammar: Sequence[str] | None,
        listen: bool = True,
        max_speech: float = 6.0,
    ) -> Heard | None:
        """Say ``text``, then take a key, or speech where the language has a recognizer.

        Speech stops the prompt (barge-in) as a key does. ``None`` is silence; speech
        that matched nothing is a ``Heard`` with empty text. ``grammar=None`` asks the
        engine for free speech (only engines with ``dictation`` do it well).
        """
        listener = await self._listener(call) if listen else None
        if listener is None:
            await self.say(call, text)
            key = await self.key(call, FIRST_KEY_TIMEOUT)
            return None if key is None else Heard(key=key)
        engine = self.engine(call.lang)
        assert engine is not None
        hearing = asyncio.create_task(
            listener.hear(
                engine, lang=call.lang, grammar=grammar, no_input=120, max_speech=max_speech
            )
        )
        barge = asyncio.create_task(self._stop_on_speech(call, listener))
        try:
            await self.say(call, text)
            if not call.keys and not listener.speech_started.is_set():
                key_wait = asyncio.create_task(self.key(call, FIRST_KEY_TIMEOUT))
                speech_wait = asyncio.create_task(listener.speech_started.wait())
                await asyncio.wait({key_wait, speech_wait}, return_when=asyncio.FIRST_COMPLETED)
                speech_wait.cancel()
                if key_wait.done():
                    key = key_wait.result()
                    if key is not None:
                        return Heard(key=key)
                    if not listener.speech_started.is_set():
                        return None
                else:
                    key_wait.cancel()
            if call.keys:
                return Heard(key=call.keys.pop(0))
            result = await asyncio.wait_for(asyncio.shield(hearing), max_speech + 4)
        except TimeoutError:
            return None
        finally:
            barge.cancel()
            if not hearing.done():
                hearing.cancel()
            await asyncio.gather(hearing, barge, return_exceptions=True)
        if result is None:
            return None
        return Heard(text=" ".join(result.text.replace("[unk]", " ").split()))

    async def _listener(self, call: Call) -> CallListener | None:
        if self._speech is None or call.lang not in self._speech.engines:
            return None
        listener = self._listeners.get(call.channel_id)
        if listener is None:
            listener = self._speech.listener()
            self._listeners[call.channel_id] = listener
            try:
                await listener.start(call.channel_id)
            except ListenerError:
                log.exception(
                    "cannot hear the caller; keys only", extra={"call_id": call.record_id}
                )
                self._listeners.pop(call.channel_id, None)
                return None
        return listener

    async def _stop_on_speech(self, call: Call, listener: CallListener) -> None:
        await listener.speech_started.wait()
        if call.playing is not None:
            with contextlib.suppress(AriError):
                await self.ari.stop_playback(call.playing)

    # ---------------------------------------------------------------- media
    async def say(self, call: Call, text: str, *, interruptible: bool = True) -> None:
        """Speak ``text``; a key press stops it (and is kept for the next read).

        If synthesis fails the caller hears the pre-rendered "please hold" instead of
        silence, and ``NeedsAgent`` sends the call to a person.
        """
        try:
            path = await self._speaker.synthesize(text, call.lang)
        except TtsError:
            log.exception("speech synthesis failed", extra={"call_id": call.record_id})
            await self.step(call, "tts_fallback")
            await self.play_file(call, self._speaker.fallback_prompt(call.lang))
            raise NeedsAgent from None
        await self.play_file(call, path, interruptible=interruptible)

    async def play_file(self, call: Call, path: Path, *, interruptible: bool = False) -> None:
        media = asterisk_media(self._in_root(path))
        playback_id = uuid.uuid4().hex
        call.playing = playback_id
        try:
            await self.ari.play(call.channel_id, media, playback_id)
        except AriError as exc:
            if exc.caller_gone:
                call.gone = True
                raise Hangup from exc
            raise
        try:
            while True:
                event = await self._media_event(call, timeout=120)
                if event is None:
                    return
                kind = event.get("type")
                if kind == "PlaybackFinished" and event["playback"].get("id") == playback_id:
                    return
                if kind == "ChannelDtmfReceived":
                    call.keys.append(str(event.get("digit", "")))
                    if interruptible:
                        await self.ari.stop_playback(playback_id)
                        return
        finally:
            call.playing = None

    def _in_root(self, path: Path) -> Path:
        if self._root is None:
            return path
        return Path("/") / path.resolve().relative_to(self._root.resolve())

    async def key(self, call: Call, timeout: float) -> str | None:
        if call.keys:
            return call.keys.pop(0)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            event = await self._media_event(call, timeout=left)
            if event is None:
                return None
            if event.get("type") == "ChannelDtmfReceived":
                return str(event.get("digit", ""))

    async def digits(self, call: Call, max_len: int) -> str:
        """Keys up to ``#`` or ``max_len`` digits, with a timeout between keys."""
        out = ""
        timeout = FIRST_KEY_TIMEOUT * 2
        while len(out) < max_len:
            key = await self.key(call, timeout)
            if key is None or key == "#":
                return out
            if key.isdigit():
                out += key
            timeout = NEXT_KEY_TIMEOUT
        # Full length: the caller may still press the terminator; it belongs to this entry.
        key = await self.key(call, 1.5)
        if key is not None and key != "#":
            call.keys.insert(0, key)
        return out

    async def next(self, call: Call, timeout: float) -> dict[str, Any] | None:
        """The call's next event (``None`` on timeout); the caller hanging up raises."""
        if call.later:
            return call.later.pop(0)
        return await self._raw_next(call, timeout)

    async def _media_event(self, call: Call, timeout: float) -> dict[str, Any] | None:
        """Like ``next`` for prompts and keys: other parties' events are kept for later."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            event = await self._raw_next(call, max(left, 0))
            if event is None:
                return None
            foreign = str((event.get("channel") or {}).get("id", call.channel_id))
            if str(event.get("type", "")).startswith("hl_") or foreign != call.channel_id:
                call.later.append(event)
                continue
            return event

    async def _raw_next(self, call: Call, timeout: float) -> dict[str, Any] | None:
        try:
            event = await asyncio.wait_for(call.events.get(), timeout)
        except TimeoutError:
            return None
        if event.get("type") in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
            if str((event.get("channel") or {}).get("id")) == call.channel_id:
                call.gone = True
                raise Hangup
        return event

    # -------------------------------------------------------------- records
    async def open_conversation(self, call: Call, intent: str | None = None) -> str:
        """The call's ``voice`` conversation, opened through the ``Inbox`` for the caller's
        number, linked from its CDR and known to the IVR (hub and ACD events reach it)."""
        opened = await self.inbox.open(CHANNEL, call.lang, address=call.caller, intent=intent)
        call.conversation_id = opened.conversation_id
        self.conversation_opened(call)
        await self.update(call, conversation_id=opened.conversation_id)
        return opened.conversation_id

    async def step(self, call: Call, step: str, value: str | None = None) -> None:
        entry: dict[str, Any] = {"at": utcnow().isoformat(), "step": step}
        if value is not None:
            entry["value"] = value
        async with self._sessions() as session:
            record = await session.get(CallRecord, call.record_id)
            if record is not None:
                record.ivr_path = [*record.ivr_path, entry]
                if step == "language":
                    record.language = value
                await session.commit()
        log.info("ivr step", extra={"call_id": call.record_id, "step": step, "value": value})

    async def update(self, call: Call, **values: Any) -> None:
        async with self._sessions() as session:
            record = await session.get(CallRecord, call.record_id)
            if record is not None:
                for key, value in values.items():
                    setattr(record, key, value)
                await session.commit()
