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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.lang import Lang
from hotline.store.models import Blacklist, CallRecord, Contact, new_id, utcnow
from hotline.tickets import CHINA, PUBLIC_STATUS, LookupOutcome, TicketService
from voice_ivr.ari import AriClient, AriError
from voice_ivr.prompts import prompt
from voice_ivr.tts import asterisk_media

log = logging.getLogger(__name__)

FIRST_KEY_TIMEOUT = 6.0  # seconds of silence after a prompt before a reprompt
NEXT_KEY_TIMEOUT = 5.0  # between digits of a code
MAX_TRIES = 3
MENU = {"1": "report", "2": "complaint", "3": "case_status", "4": "legal", "0": "agent"}


class Speaker(Protocol):
    async def synthesize(self, text: str, lang: Lang) -> Path: ...


class Hangup(Exception):
    """The caller hung up: the call's task ends."""


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


class Ivr:
    def __init__(
        self,
        ari: AriClient,
        sessions: async_sessionmaker[AsyncSession],
        tickets: TicketService,
        speaker: Speaker,
        *,
        root: Path | None,
    ) -> None:
        self._ari = ari
        self._sessions = sessions
        self._tickets = tickets
        self._speaker = speaker
        self._root = root  # prompt files live inside the Asterisk root
        self._calls: dict[str, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --------------------------------------------------------------- events
    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else None
        if kind == "StasisStart" and channel is not None:
            await self._start(channel, event.get("args") or [])
            return
        target = None
        if channel is not None:
            target = self._calls.get(str(channel.get("id")))
        elif isinstance(event.get("playback"), dict):
            uri = str(event["playback"].get("target_uri", ""))
            target = self._calls.get(uri.removeprefix("channel:"))
        if target is not None:
            await target.events.put(event)

    async def reconcile(self) -> None:
        """After an ARI reconnect: calls whose channel vanished meanwhile are over."""
        alive = {str(c.get("id")) for c in await self._ari.channels()}
        for channel_id, call in list(self._calls.items()):
            if channel_id not in alive:
                await call.events.put({"type": "StasisEnd", "channel": {"id": channel_id}})

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
        disposition = "completed"
        try:
            await self._ari.answer(call.channel_id)
            await self._update(call, answered_at=utcnow())
            await self._step(call, "answered")
            if await self._blacklisted(call):
                await self._step(call, "refused", "blacklisted")
                log.warning("blacklisted caller refused", extra={"call_id": call.record_id})
                await self._say(call, prompt("blacklisted", call.lang), interruptible=False)
                disposition = "refused"
                return
            call.lang = await self._choose_language(call)
            await self._step(call, "language", call.lang)
            await self._menu(call)
        except Hangup:
            disposition = "caller_hangup"
        except (AriError, OSError):
            log.exception("call failed", extra={"call_id": call.record_id})
            disposition = "failed"
        finally:
            self._calls.pop(call.channel_id, None)
            if not call.gone:
                with contextlib.suppress(AriError, OSError):
                    await self._ari.hangup(call.channel_id)
            await self._update(call, ended_at=utcnow(), disposition=disposition)

    async def _choose_language(self, call: Call) -> Lang:
        await self._say(call, prompt("welcome", "zh"))
        key = await self._key(call, FIRST_KEY_TIMEOUT)
        return "en" if key == "2" else "zh"

    async def _menu(self, call: Call) -> None:
        misses = 0
        while True:
            await self._say(call, prompt("menu", call.lang))
            key = await self._key(call, FIRST_KEY_TIMEOUT)
            choice = {
                "1": "report",
                "2": "complaint",
                "3": "case_status",
                "4": "legal",
                "0": "agent",
            }
            if key is None or key not in choice:
                misses += 1
                await self._step(call, "no_input" if key is None else "no_match")
                if misses >= MAX_TRIES:
                    await self._say(call, prompt("goodbye", call.lang), interruptible=False)
                    return
                continue
            misses = 0
            await self._step(call, "menu", MENU[key])
            if MENU[key] == "case_status":
                await self._case_status(call)
            else:
                await self._say(call, prompt("not_by_phone_yet", call.lang))

    async def _case_status(self, call: Call) -> None:
        await self._say(call, prompt("enter_code", call.lang))
        code = await self._digits(call, 12)
        await self._say(call, prompt("enter_pin", call.lang))
        pin = await self._digits(call, 6)
        result = await self._tickets.lookup(code, pin, f"call-{call.record_id}")
        await self._step(call, "case_status", result.outcome.value)
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
        await self._say(call, text)

    # ---------------------------------------------------------------- media
    async def _say(self, call: Call, text: str, *, interruptible: bool = True) -> None:
        """Speak ``text``; a key press stops it (and is kept for the next read)."""
        path = await self._speaker.synthesize(text, call.lang)
        media = asterisk_media(self._in_root(path))
        playback_id = uuid.uuid4().hex
        call.playing = playback_id
        try:
            await self._ari.play(call.channel_id, media, playback_id)
        except AriError as exc:
            if exc.status == 404:  # the channel is gone: the caller hung up
                call.gone = True
                raise Hangup from exc
            raise
        try:
            while True:
                event = await self._next(call, timeout=120)
                if event is None:
                    return
                kind = event.get("type")
                if kind == "PlaybackFinished" and event["playback"].get("id") == playback_id:
                    return
                if kind == "ChannelDtmfReceived":
                    call.keys.append(str(event.get("digit", "")))
                    if interruptible:
                        await self._ari.stop_playback(playback_id)
                        return
        finally:
            call.playing = None

    def _in_root(self, path: Path) -> Path:
        if self._root is None:
            return path
        return Path("/") / path.resolve().relative_to(self._root.resolve())

    async def _key(self, call: Call, timeout: float) -> str | None:
        if call.keys:
            return call.keys.pop(0)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            event = await self._next(call, timeout=left)
            if event is None:
                return None
            if event.get("type") == "ChannelDtmfReceived":
                return str(event.get("digit", ""))

    async def _digits(self, call: Call, max_len: int) -> str:
        """Keys up to ``#`` or ``max_len`` digits, with a timeout between keys."""
        out = ""
        timeout = FIRST_KEY_TIMEOUT * 2
        while len(out) < max_len:
            key = await self._key(call, timeout)
            if key is None or key == "#":
                return out
            if key.isdigit():
                out += key
            timeout = NEXT_KEY_TIMEOUT
        # Full length: the caller may still press the terminator; it belongs to this entry.
        key = await self._key(call, 1.5)
        if key is not None and key != "#":
            call.keys.insert(0, key)
        return out

    async def _next(self, call: Call, timeout: float) -> dict[str, Any] | None:
        try:
            event = await asyncio.wait_for(call.events.get(), timeout)
        except TimeoutError:
            return None
        if event.get("type") in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
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
            return await session.get(Blacklist, contact.id) is not None

    async def _step(self, call: Call, step: str, value: str | None = None) -> None:
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

    async def _update(self, call: Call, **values: Any) -> None:
        async with self._sessions() as session:
            record = await session.get(CallRecord, call.record_id)
            if record is not None:
                for key, value in values.items():
                    setattr(record, key, value)
                await session.commit()


def _spoken_date(day: dt.date, lang: Lang) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else day.strftime("%B %d, %Y")
