"""The IVR as an ARI Stasis application: one task per call, fed by that call's events.

Each call answers, checks the blacklist, offers the language, then the main menu; from
there the caller checks a case, talks with the bot (``dialogue``), goes to a person
(``agents``) or leaves a message (``voicemail``). Everything a call does to the hotline
goes through the ``Inbox``; the primitives (say, ask, digits, CDR steps) are in
``calls``. Every step the caller takes is appended to the call's CDR
(``call_record.ivr_path``) with a timestamp; digits of case codes and PINs are never
written there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.lang import Lang
from hotline.ports import Inbox
from hotline.store.models import CallRecord, new_id, utcnow
from voice_ivr import agents, dialogue, voicemail
from voice_ivr.ari import AriClient, AriError
from voice_ivr.calls import (
    CHANNEL,
    FIRST_KEY_TIMEOUT,
    Call,
    Calls,
    Desk,
    Speaker,
    Speech,
    Transcriber,
)
from voice_ivr.errors import Hangup, NeedsAgent
from voice_ivr.prompts import prompt, spoken_lines
from voice_ivr.recorder import Recorder

log = logging.getLogger(__name__)

MAX_TRIES = 3
MENU = {"1": "report", "2": "complaint", "3": "case_status", "4": "legal", "0": "agent"}
# Menu choices handled by people route like the chat intents of the same topic.
INTENT_OF = {"report": "report_crime", "complaint": "file_complaint", "legal": "legal_consult"}

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


class Ivr(Calls):
    """The Stasis app: starts a task per caller and runs the call's flow."""

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
        office_open: Callable[[], bool] = lambda: True,
        transcriber: Transcriber | None = None,
        speech: Speech | None = None,
        outbound_endpoint: str = "trunk",
        phrases: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(
            ari,
            sessions,
            inbox,
            speaker,
            root=root,
            desk=desk,
            recorder=recorder,
            transcriber=transcriber,
            speech=speech,
            outbound_endpoint=outbound_endpoint,
            phrases=phrases,
        )
        self._office_open = office_open
        self._tasks: set[asyncio.Task[None]] = set()

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

    def office_open(self) -> bool:
        return self._office_open()

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
            if await self.inbox.blocked(CHANNEL, call.caller):
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
                if intent is not None and self.engine(call.lang):
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
                if call.disposition == "completed" and call.handed_off:
                    call.disposition = "abandoned"
                    await self.step(call, "abandoned")
                elif call.disposition == "completed":
                    call.disposition = "caller_hangup"
            else:
                log.exception("call failed", extra={"call_id": call.record_id})
                call.disposition = "failed"
        except Exception:  # a bug, or a part (database, ACD) failing: logged, not lost
            log.exception("call failed", extra={"call_id": call.record_id})
            call.disposition = "failed"
        except asyncio.CancelledError:  # the hub is stopping: failed, as a crash's calls are
            call.disposition = "failed"
            raise
        finally:
            ended_at = utcnow()
            self._calls.pop(call.channel_id, None)
            listener = self._listeners.pop(call.channel_id, None)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            if not call.gone:
                with contextlib.suppress(AriError, OSError):
                    await self.ari.hangup(call.channel_id)
            await self._end_conversation(call)
            if call.conversation_id is not None:
                self._by_conversation.pop(call.conversation_id, None)
            await self.update(call, ended_at=ended_at, disposition=call.disposition)

    async def _end_conversation(self, call: Call) -> None:
        """However and wherever the call ended, its conversation ends with it.

        Through the ``Inbox`` (which closes it through the ACD), with the call's
        disposition, so no conversation of a call that is over stays with the bot, queued
        or waiting for a message. A bot turn still in progress is waited for first: it may
        yet hand the conversation off and queue it.
        """
        if call.conversation_id is None:
            return
        task = asyncio.current_task()
        if call.turn_pending and not (task is not None and task.cancelling()):
            log.info("call over in a bot turn; waiting for it", extra={"call_id": call.record_id})
            await self._turn_ended(call, dialogue.TURN_TIMEOUT)
        try:
            await self.inbox.end(
                call.conversation_id, call.disposition, by="caller" if call.gone else "ivr"
            )
        except Exception:
            log.exception("conversation not closed", extra={"call_id": call.record_id})

    async def _turn_ended(self, call: Call, timeout: float) -> None:
        """Wait (at most ``timeout``) for the hub to end the bot's turn."""
        if any(e.get("type") == "hl_turn_end" for e in call.later):
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while (await call.events.get()).get("type") != "hl_turn_end":
                    pass
        call.turn_pending = False

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

    async def _case_status(self, call: Call) -> None:
        """Code and PIN by keys; the answer is the hub's status reply, spoken."""
        await self.say(call, prompt("enter_code", call.lang))
        code = await self.digits(call, 12)
        await self.say(call, prompt("enter_pin", call.lang))
        pin = await self.digits(call, 6)
        answer = await self.inbox.lookup_case(
            code, pin, key=f"call-{call.record_id}", lang=call.lang
        )
        await self.step(call, "case_status", answer.outcome)
        # The menu follows: the reply's buttons (try again, a person) are its choices.
        await self.say(call, spoken_lines(answer.text, call.lang))
