"""The IVR as an ARI Stasis application: one task per call, fed by that call's events.

Each call answers, checks the blacklist, offers the language, then the main menu. Keys
stop the prompt that is playing (barge-in). Every step the caller takes is appended to
the call's CDR (``call_record.ivr_path``) with a timestamp; digits of case codes and
PINs are never written there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.lang import Lang
from hotline.store.models import Blacklist, CallRecord, Contact, new_id, utcnow
from hotline.tickets import CHINA, PUBLIC_STATUS, LookupOutcome, TicketService
from voice_ivr import agents, dialogue, voicemail
from voice_ivr.ari import AriClient, AriError
from voice_ivr.asr import AsrEngine
from voice_ivr.dialogue import Dialogue
from voice_ivr.errors import Hangup, NeedsAgent
from voice_ivr.listen import CallListener, ListenerError
from voice_ivr.prompts import prompt
from voice_ivr.recorder import Recorder
from voice_ivr.tts import TtsError, asterisk_media

log = logging.getLogger(__name__)

FIRST_KEY_TIMEOUT = 6.0  # seconds of silence after a prompt before a reprompt
NEXT_KEY_TIMEOUT = 5.0  # between digits of a code
MAX_TRIES = 3
MENU = {"1": "report", "2": "complaint", "3": "case_status", "4": "legal", "0": "agent"}
# Menu choices handled by people route like the chat intents of the same topic.
INTENT_OF = {"report": "report_crime", "complaint": "file_complaint", "legal": "legal_consult"}


class Speaker(Protocol):
    async def synthesize(self, text: str, lang: Lang) -> Path: ...

    def fallback_prompt(self, lang: Lang) -> Path: ...


Transcriber = Callable[[Path, Lang], Awaitable[str | None]]

# What callers may say at the main menu, per language, and the menu choice it means.
SPOKEN_MENU: dict[str, dict[str, str]] = {
    "en": {
        "report": "report",
        "complaint": "complaint",
        "case status": "case_status",
        "legal advice": "legal",
        "agent": "agent",
    },
    "zh": {
        "举报": "report",
        "控告": "complaint",
        "申诉": "complaint",
        "查询": "case_status",
        "法律咨询": "legal",
        "人工": "agent",
    },
}


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
    """What calls need of the ACD (``hotline.acd.service.AcdService``)."""

    push: Any

    async def enqueue(self, conversation_id: str) -> None: ...

    async def accept(self, conversation_id: str, user_id: str) -> Any: ...

    async def reject(self, conversation_id: str, user_id: str) -> bool: ...

    async def close(self, conversation_id: str, disposition: str, *, by: str) -> None: ...


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
    contact_id: str | None = None
    conversation_id: str | None = None
    disposition: str = "completed"
    # Events that came while a prompt played or keys were read (offers, agent phones):
    # kept for the phase that handles them.
    later: list[dict[str, Any]] = field(default_factory=list)
    state: str = "ivr"  # for the console: ivr, bot, queued, ringing, talking, survey
    bot_turns: int = 0  # answers given to the bot; the first prompt says how to talk to it


class Ivr:
    def __init__(
        self,
        ari: AriClient,
        sessions: async_sessionmaker[AsyncSession],
        tickets: TicketService,
        speaker: Speaker,
        *,
        root: Path | None,
        desk: Desk | None = None,
        recorder: Recorder | None = None,
        office_open: Callable[[], bool] = lambda: True,
        transcriber: Transcriber | None = None,
        speech: Speech | None = None,
        outbound_endpoint: str = "trunk",
        dialogue: Dialogue | None = None,
        phrases: dict[str, list[str]] | None = None,
    ) -> None:
        self.ari = ari
        self._sessions = sessions
        self._tickets = tickets
        self._speaker = speaker
        self._root = root  # prompt files live inside the Asterisk root
        self.desk = desk
        self.recorder = recorder
        self._office_open = office_open
        self._transcriber = transcriber
        self._speech = speech
        self.outbound_endpoint = outbound_endpoint  # PJSIP endpoint for outside numbers
        self.dialogue = dialogue  # the hub, for speech turns with the bot
        # Per language: the bot's phrases a grammar-only recognizer can hear (its words).
        self.phrases = phrases or {}
        self._listeners: dict[str, CallListener] = {}  # caller channel id -> its listener
        self._calls: dict[str, Call] = {}
        self._legs: dict[str, Call] = {}  # agent phone channel id -> the caller's call
        self._by_conversation: dict[str, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def speaker(self) -> Speaker:
        return self._speaker

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    @property
    def tickets(self) -> TicketService:
        return self._tickets

    # --------------------------------------------------------------- events
    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else None
        if self.recorder is not None and await self.recorder.on_event(event):
            return
        for listener in list(self._listeners.values()):
            if await listener.on_event(event):
                return
        channel_id = str(channel.get("id")) if channel is not None else ""
        if kind == "StasisStart" and channel is not None and channel_id not in self._legs:
            if not event.get("args"):  # a caller; our own channels carry arguments
                await self._start(channel, [])
            return
        target = None
        if channel is not None:
            target = self._calls.get(channel_id) or self._legs.get(channel_id)
        else:
            for key in ("playback", "recording"):
                if isinstance(event.get(key), dict):
                    uri = str(event[key].get("target_uri", ""))
                    target = self._calls.get(uri.removeprefix("channel:"))
        if target is not None:
            await target.events.put(event)

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

    def office_open(self) -> bool:
        return self._office_open()

    async def transcribe(self, wav: Path, lang: Lang) -> str | None:
        """What a recording says, if a model for ``lang`` is installed."""
        if self._transcriber is None:
            return None
        try:
            return await self._transcriber(wav, lang)
        except Exception:
            log.exception("transcription failed")
            return None

    async def reconcile(self) -> None:
        """After an ARI reconnect, catch up on what the lost events would have said.

        Calls whose channel vanished are over; agents' phones that vanished hung up; a
        prompt that finished meanwhile is finished (else the call would wait for it).
        """
        alive = {str(c.get("id")) for c in await self.ari.channels()}
        for channel_id, call in list(self._calls.items()):
            if channel_id not in alive:
                await call.events.put({"type": "StasisEnd", "channel": {"id": channel_id}})
                continue
            if call.playing is not None and not await self.ari.playing(call.playing):
                playback = {"id": call.playing, "target_uri": f"channel:{channel_id}"}
                await call.events.put({"type": "PlaybackFinished", "playback": playback})
        for leg_id, call in list(self._legs.items()):
            if leg_id not in alive:
                await call.events.put({"type": "ChannelDestroyed", "channel": {"id": leg_id}})
        log.info("ari reconciled", extra={"calls": len(self._calls)})

    async def _start(self, channel: dict[str, Any], _args: list[Any]) -> None:
        channel_id = str(channel.get("id", ""))
        if not channel_id or channel_id in self._calls:
            return
        caller = str((channel.get("caller") or {}).get("number") or "anonymous")[:64]
        dialled = str((channel.get("dialplan") or {}).get("exten") or "")[:64]
        record = CallRecord(
            id=new_id(), channel_id=channel_id, caller=caller, dialled=dialled, ivr_path=[]
        )
        async with self._sessions() as session:
            session.add(record)
            await session.commit()
        call = Call(channel_id, caller, dialled, record.id)
        self._calls[channel_id] = call
        task = asyncio.create_task(self._run(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------ call flow
    async def _run(self, call: Call) -> None:
        try:
            await self.ari.answer(call.channel_id)
            await self.update(call, answered_at=utcnow())
            await self.step(call, "answered")
            if await self._blacklisted(call):
                await self.step(call, "refused", "blacklisted")
                log.warning("blacklisted caller refused", extra={"call_id": call.record_id})
                await self.say(call, prompt("blacklisted", call.lang), interruptible=False)
                call.disposition = "refused"
                return
            try:
                call.lang = await self._choose_language(call)
                await self.step(call, "language", call.lang)
                if not self.office_open():
                    await self.step(call, "after_hours")
                    await voicemail.take_message(self, call, why="after_hours")
                    return
                wants = await self._menu(call)
            except NeedsAgent:
                wants = ("tts_failed", None)
            if wants is not None:
                reason, intent = wants
                conversation_id: str | None = None
                if intent is not None and self.dialogue is not None and self.engine(call.lang):
                    conversation_id = await dialogue.converse(self, call, intent)
                    if conversation_id is None:
                        return
                with contextlib.suppress(NeedsAgent):  # speech failed after the agent
                    await agents.connect(
                        self, call, reason=reason, intent=intent, conversation_id=conversation_id
                    )
        except (Hangup, AriError, OSError) as exc:
            if isinstance(exc, Hangup) or (isinstance(exc, AriError) and exc.caller_gone):
                call.gone = True
                if call.disposition == "completed":
                    call.disposition = "caller_hangup"
            else:
                log.exception("call failed", extra={"call_id": call.record_id})
                call.disposition = "failed"
        finally:
            self._calls.pop(call.channel_id, None)
            listener = self._listeners.pop(call.channel_id, None)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            if call.conversation_id is not None:
                self._by_conversation.pop(call.conversation_id, None)
            if not call.gone:
                with contextlib.suppress(AriError, OSError):
                    await self.ari.hangup(call.channel_id)
            await self.update(call, ended_at=utcnow(), disposition=call.disposition)

    async def _choose_language(self, call: Call) -> Lang:
        await self.say(call, prompt("welcome", "zh"))
        key = await self.key(call, FIRST_KEY_TIMEOUT)
        return "en" if key == "2" else "zh"

    async def _menu(self, call: Call) -> tuple[str, str | None] | None:
        """The main menu; returns (handoff reason, intent) when the caller needs a person."""
        misses = 0
        while True:
            choice = await self._ask_menu(call)
            if choice is None or choice not in MENU.values():
                misses += 1
                await self.step(call, "no_input" if choice is None else "no_match")
                if misses >= MAX_TRIES:
                    return ("bot_gave_up", None)
                continue
            misses = 0
            await self.step(call, "menu", choice)
            if choice == "case_status":
                await self._case_status(call)
            elif choice == "agent":
                return ("requested", None)
            else:
                return ("requested", INTENT_OF[choice])

    async def _ask_menu(self, call: Call) -> str | None:
        """The menu choice, by key or by speech; ``""`` matched nothing, ``None`` is silence."""
        phrases = SPOKEN_MENU[call.lang]
        heard = await self.ask(call, prompt("menu", call.lang), grammar=list(phrases))
        if heard is None:
            return None
        if heard.key is not None:
            return MENU.get(heard.key, "")
        await self.step(call, "speech", heard.text or "(no match)")
        return phrases.get(heard.text, "")

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

    async def _case_status(self, call: Call) -> None:
        await self.say(call, prompt("enter_code", call.lang))
        code = await self.digits(call, 12)
        await self.say(call, prompt("enter_pin", call.lang))
        pin = await self.digits(call, 6)
        result = await self._tickets.lookup(code, pin, f"call-{call.record_id}")
        await self.step(call, "case_status", result.outcome.value)
        lang = call.lang
        if result.outcome is LookupOutcome.FOUND and result.ticket is not None:
            ticket = result.ticket
            text = prompt(
                "status_found",
                lang,
                status=PUBLIC_STATUS[ticket.status][lang],
                reply_due=_spoken_date(ticket.reply_due, lang),
            )
        elif result.outcome is LookupOutcome.LOCKED and result.locked_until is not None:
            until = result.locked_until.astimezone(CHINA).strftime("%H:%M")
            text = prompt("status_locked", lang, until=until)
        else:
            text = prompt("status_no_match", lang, left=result.attempts_left)
        await self.say(call, text)

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
    async def _blacklisted(self, call: Call) -> bool:
        async with self._sessions() as session:
            contact = (
                await session.execute(
                    select(Contact).where(
                        Contact.channel == "voice", Contact.external_id == call.caller
                    )
                )
            ).scalar_one_or_none()
            if contact is None:
                contact = Contact(id=new_id(), channel="voice", external_id=call.caller)
                session.add(contact)
            record = await session.get(CallRecord, call.record_id)
            if record is not None:
                record.contact_id = contact.id
            await session.commit()
            call.contact_id = contact.id
            return await session.get(Blacklist, contact.id) is not None

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


def _spoken_date(day: dt.date, lang: Lang) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else day.strftime("%B %d, %Y")
