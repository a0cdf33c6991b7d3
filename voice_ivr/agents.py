"""A caller who needs a person: queued through the ACD, hold music, agents' phones rung,
the bridge (recorded), then the survey.

The ACD decides exactly as for chats; this module turns its decisions into call legs.
An offer rings the agent's phone for the offer's lifetime; answering it is the agent's
accept. A phone that does not answer (or refuses) is a rejected offer, so the ACD moves
on to the next agent at once. The caller hears hold music and, when their place changes,
how many callers are ahead.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hotline.store.models import ConversationState
from voice_ivr import phones, voicemail
from voice_ivr.ari import AriError
from voice_ivr.calls import Call, Calls
from voice_ivr.errors import Hangup, NeedsAgent
from voice_ivr.prompts import prompt
from voice_ivr.recorder import Recorder

log = logging.getLogger(__name__)

RING_MIN = 5  # seconds an agent's phone rings at least
ANNOUNCE_EVERY = 20.0  # seconds between position announcements
SURVEY_WAIT = 8.0
_LEG_GONE = ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest")


@dataclass
class _Talk:
    """The state of one caller's stay with the ACD."""

    conversation_id: str
    queued_at: float = field(default_factory=time.monotonic)
    leg: str | None = None  # the agent phone ringing or talking
    agent_id: str | None = None
    answered: bool = False
    dropped: set[str] = field(default_factory=set)  # legs we hung up ourselves
    bridge: str | None = None
    recording: str | None = None  # the bridge's recording, while it runs
    talk_started: float | None = None
    talk_seconds: float = 0.0
    waited: int | None = None  # seconds until the first agent answered
    moh: bool = False
    last_announced: float = float("-inf")
    position: int | None = None


async def connect(
    ivr: Calls, call: Call, *, reason: str, intent: str | None, conversation_id: str | None = None
) -> None:
    """Queue the caller for a person; returns when the call is over or handled.

    ``conversation_id``: the caller's conversation with the bot, which handed it off and
    said so (the hub has queued it already). Else a new one is opened, and handed off
    through the ``Inbox`` once the caller heard they are being connected. A caller who
    hangs up before a person answers has abandoned the call; their conversation is
    closed when the call ends (``Ivr._end_conversation``).
    """
    call.handed_off = True
    if ivr.desk is None:
        await voicemail.take_message(ivr, call, why="nobody_free")
        return
    if conversation_id is not None:  # the bot's reason: asked for, gave up, unavailable
        handling = await ivr.inbox.state(conversation_id)
        reason = (handling.reason if handling is not None else None) or reason
    await ivr.step(call, "handoff", reason)
    if conversation_id is None:
        conversation_id = await ivr.open_conversation(call, intent)
        with contextlib.suppress(NeedsAgent):  # already on the way to a person
            await ivr.say(call, prompt("connecting", call.lang), interruptible=False)
    talk = _Talk(conversation_id)
    call.state = "queued"
    await ivr.inbox.hand_off(talk.conversation_id, reason)  # after the bot: queued already
    outcome = "ended"
    try:
        await _hold(ivr, call, talk, True)
        outcome = await _wait_and_talk(ivr, call, talk)
    finally:
        await _wind_up(ivr, call, talk)
    if outcome == "survey":
        await _survey(ivr, call, talk)
    elif outcome.startswith("outside:"):
        await _outside(ivr, call, outcome.removeprefix("outside:"))
    elif outcome == "message":
        await voicemail.take_message(ivr, call, why="nobody_free")


async def _wait_and_talk(ivr: Calls, call: Call, talk: _Talk) -> str:
    """The event loop of a queued or connected caller; returns what comes next."""
    desk = ivr.desk
    assert desk is not None
    while True:
        event = await ivr.next(call, timeout=1.0)
        if event is None:
            continue
        kind = str(event.get("type"))
        channel_id = str((event.get("channel") or {}).get("id", ""))
        if kind == "hl_offer":
            await _ring(ivr, call, talk, str(event["agent_id"]), float(event["expires_at"]))
        elif kind == "hl_withdrawn":
            if talk.leg is not None and not talk.answered and event["agent_id"] == talk.agent_id:
                await _drop_leg(ivr, talk)
        elif kind == "StasisStart" and channel_id == talk.leg:
            await _answered(ivr, call, talk)
        elif kind in _LEG_GONE and channel_id == talk.leg:
            leg, agent_id, answered = talk.leg, talk.agent_id, talk.answered
            talk.leg = None
            ivr.leg_closed(leg)
            if not answered:
                call.state = "queued"
                await ivr.step(call, "agent_no_answer")
                if agent_id is not None:
                    await desk.reject(talk.conversation_id, agent_id)
                continue
            await _hang_up_talk(ivr, call, talk, "agent_hung_up", "completed", agent_id or "phone")
            return "survey"
        elif kind == "hl_hangup" and talk.answered and talk.leg is not None:
            by = talk.agent_id or "console"
            await _hang_up_talk(ivr, call, talk, "agent_hung_up", "completed", by)
            return "survey"
        elif kind == "hl_transfer_out" and talk.answered and talk.leg is not None:
            call.disposition = "transferred_out"
            by = str(event["by"])
            await _hang_up_talk(ivr, call, talk, "transferred_out", "transferred_out", by)
            return "outside:" + str(event["number"])
        elif kind == "hl_state":
            state = event.get("state")
            if state == ConversationState.CLOSED.value:
                if talk.answered:
                    await _drop_leg(ivr, talk)
                    await _end_talk(ivr, talk)
                    return "survey"
                return "ended"
            if state == ConversationState.QUEUED.value and talk.answered:
                await ivr.step(call, "transferred")
                call.state = "queued"
                await _drop_leg(ivr, talk)
                await _end_talk(ivr, talk)
                await _hold(ivr, call, talk, True)
            elif state == ConversationState.LEAVE_MESSAGE.value:
                return "message"  # the ACD let the contact go
        elif kind == "hl_position":
            await _announce(ivr, call, talk, int(event["position"]))


async def _ring(ivr: Calls, call: Call, talk: _Talk, agent_id: str, expires_at: float) -> None:
    desk = ivr.desk
    assert desk is not None
    if talk.leg is not None:  # a new offer replaces an unanswered one
        await _drop_leg(ivr, talk)
    endpoint = await _endpoint_of(ivr, agent_id)
    if endpoint is None:
        log.warning("agent has no phone", extra={"agent_id": agent_id})
        await desk.reject(talk.conversation_id, agent_id)
        return
    leg = uuid.uuid4().hex
    talk.leg, talk.agent_id, talk.answered = leg, agent_id, False
    ivr.leg_opened(leg, call)
    call.state = "ringing"
    ring = max(RING_MIN, int(expires_at - time.time()))
    await ivr.step(call, "ringing_agent")
    await _push(ivr, agent_id, talk, "ringing")
    try:
        await ivr.ari.originate(
            f"PJSIP/{endpoint}", leg, app_args="agent", timeout=ring, caller_id=call.caller
        )
    except AriError as exc:
        log.warning("could not ring the agent", extra={"agent_id": agent_id, "error": str(exc)})
        talk.leg = None
        ivr.leg_closed(leg)
        await desk.reject(talk.conversation_id, agent_id)


async def _answered(ivr: Calls, call: Call, talk: _Talk) -> None:
    """The agent picked up: that is the accept. Bridge the two and record the bridge."""
    desk = ivr.desk
    assert desk is not None and talk.leg is not None and talk.agent_id is not None
    result = await desk.accept(talk.conversation_id, talk.agent_id)
    if not result.ok:  # the offer expired while the phone was being picked up
        await _drop_leg(ivr, talk)
        return
    talk.answered = True
    call.handed_off = False
    call.state = "talking"
    await _hold(ivr, call, talk, False)
    talk.bridge = uuid.uuid4().hex
    await ivr.ari.bridge(talk.bridge, [call.channel_id, talk.leg])
    talk.talk_started = time.monotonic()
    if talk.waited is None:
        talk.waited = int(talk.talk_started - talk.queued_at)
    queue_id = await _queue_of(ivr, talk.conversation_id)
    await ivr.update(call, agent_id=talk.agent_id, queue_id=queue_id, wait_seconds=talk.waited)
    await ivr.step(call, "agent_answered")
    if ivr.recorder is not None:
        name = await ivr.recorder.started(
            call_id=call.record_id,
            conversation_id=talk.conversation_id,
            kind="conversation",
            caller=call.caller,
            agent_id=talk.agent_id,
            queue_id=queue_id,
        )
        try:
            await ivr.ari.record(f"bridges/{talk.bridge}", name)
            talk.recording = name
        except AriError:
            log.exception("bridge recording did not start", extra={"call_id": call.record_id})
            ivr.recorder.forget(name)
    await _push(ivr, talk.agent_id, talk, "talking")


async def _hang_up_talk(
    ivr: Calls, call: Call, talk: _Talk, step: str, disposition: str, by: str
) -> None:
    """The agent's side of a connected call ends (``step`` says how, in the CDR) and its
    conversation closes with ``disposition``."""
    await ivr.step(call, step)
    await _drop_leg(ivr, talk)
    await _end_talk(ivr, talk)
    await ivr.inbox.end(talk.conversation_id, disposition, by=by)


async def _drop_leg(ivr: Calls, talk: _Talk) -> None:
    if talk.leg is None:
        return
    leg = talk.leg
    talk.leg = None
    talk.dropped.add(leg)
    ivr.leg_closed(leg)
    with contextlib.suppress(AriError, OSError):
        await ivr.ari.hangup(leg)


async def _end_talk(ivr: Calls, talk: _Talk) -> None:
    """The bridge ends (its recording first); talk time is added up."""
    if talk.recording is not None and ivr.recorder is not None:
        await _stop_recording(ivr, ivr.recorder, talk.recording)
        talk.recording = None
    if talk.bridge is not None:
        with contextlib.suppress(AriError, OSError):
            await ivr.ari.destroy_bridge(talk.bridge)
        talk.bridge = None
    if talk.talk_started is not None:
        talk.talk_seconds += time.monotonic() - talk.talk_started
        talk.talk_started = None
    if talk.answered and talk.agent_id is not None:
        await _push(ivr, talk.agent_id, talk, "ended")
    talk.answered = False


async def _wind_up(ivr: Calls, call: Call, talk: _Talk) -> None:
    """However the stay ended (hang-up included): no leg or bridge is left. A stay that
    ended without its conversation closing (the caller hung up, the call failed) has it
    closed as the call ends, through the ACD, with the call's disposition."""
    await _drop_leg(ivr, talk)
    await _end_talk(ivr, talk)
    waited = talk.waited if talk.waited is not None else time.monotonic() - talk.queued_at
    values: dict[str, Any] = {"talk_seconds": round(talk.talk_seconds), "wait_seconds": int(waited)}
    await ivr.update(call, **values)
    if talk.moh and not call.gone:
        with contextlib.suppress(AriError, OSError):
            await ivr.ari.moh(call.channel_id, False)


async def _stop_recording(ivr: Calls, recorder: Recorder, name: str) -> None:
    """Stop the bridge's recording and have it sealed before the bridge goes.

    Stopped first, because Asterisk may not send ``RecordingFinished`` for a recording
    whose bridge is destroyed under it (the app's subscription goes with the bridge); if
    the event still does not come, the file is sealed as it is.
    """
    with contextlib.suppress(AriError, OSError):
        await ivr.ari.stop_recording(name)
    await recorder.wait(name, timeout=2.0)
    await recorder.finish(name)  # a no-op once the event has sealed it


async def _survey(ivr: Calls, call: Call, talk: _Talk) -> None:
    """The agent hung up; the caller stays on the line to rate the call (1, 2 or 3)."""
    call.keys.clear()
    call.state = "survey"
    await ivr.step(call, "survey")
    await ivr.say(call, prompt("survey", call.lang))
    key = await ivr.key(call, SURVEY_WAIT)
    if key not in ("1", "2", "3"):
        await ivr.step(call, "survey_skipped")
        await ivr.say(call, prompt("goodbye", call.lang), interruptible=False)
        return
    await ivr.update(call, survey=int(key))
    await ivr.inbox.rate(talk.conversation_id, int(key))
    await ivr.step(call, "survey", key)
    await ivr.say(call, prompt("survey_thanks", call.lang), interruptible=False)


async def _hold(ivr: Calls, call: Call, talk: _Talk, on: bool) -> None:
    if talk.moh == on:
        return
    try:
        await ivr.ari.moh(call.channel_id, on)
        talk.moh = on
    except AriError as exc:
        if exc.caller_gone:
            raise_hangup(call)
        raise


async def _announce(ivr: Calls, call: Call, talk: _Talk, position: int) -> None:
    now = time.monotonic()
    if talk.answered or position == talk.position or now - talk.last_announced < ANNOUNCE_EVERY:
        return
    talk.position, talk.last_announced = position, now
    ahead = max(position - 1, 0)
    text = (
        prompt("position_next", call.lang)
        if ahead == 0
        else prompt("position", call.lang, ahead=ahead)
    )
    await _hold(ivr, call, talk, False)
    with contextlib.suppress(NeedsAgent):
        await ivr.say(call, text, interruptible=False)
    if not talk.answered:
        await _hold(ivr, call, talk, True)


async def _endpoint_of(ivr: Calls, agent_id: str) -> str | None:
    async with ivr.sessions() as session:
        return await phones.endpoint_of(session, agent_id)


async def _queue_of(ivr: Calls, conversation_id: str) -> str | None:
    handling = await ivr.inbox.state(conversation_id)
    return handling.queue_id if handling is not None else None


async def _push(ivr: Calls, agent_id: str, talk: _Talk, state: str) -> None:
    push = ivr.desk.push if ivr.desk is not None else None
    if push is not None:
        frame = {"type": "call", "conversation_id": talk.conversation_id, "state": state}
        with contextlib.suppress(Exception):
            await push.to_agent(agent_id, frame)


def raise_hangup(call: Call) -> None:
    call.gone = True
    raise Hangup


async def _outside(ivr: Calls, call: Call, number: str) -> None:
    """A blind transfer: dial the number through the outbound trunk and bridge the caller.

    The hotline's part ends there; the call lasts until either side hangs up. A number
    that cannot be dialled at all (no trunk registered, the trunk refuses) is recorded as
    not answered, like one that rings out.
    """
    leg, bridge = uuid.uuid4().hex, uuid.uuid4().hex
    ivr.leg_opened(leg, call)
    answered = False
    try:
        await ivr.ari.moh(call.channel_id, True)
        await ivr.ari.originate(
            f"PJSIP/{number}@{ivr.outbound_endpoint}",
            leg,
            app_args="outside",
            timeout=45,
            caller_id=call.caller,
        )
        while True:
            event = await ivr.next(call, timeout=1.0)
            if event is None:
                continue
            kind = str(event.get("type"))
            channel_id = str((event.get("channel") or {}).get("id", ""))
            if kind == "StasisStart" and channel_id == leg:
                answered = True
                await ivr.ari.moh(call.channel_id, False)
                await ivr.ari.bridge(bridge, [call.channel_id, leg])
                await ivr.step(call, "outside_answered")
            elif kind in _LEG_GONE and channel_id == leg:
                if not answered:
                    await ivr.step(call, "outside_no_answer")
                break
    except AriError as exc:
        if exc.caller_gone:  # 404/409 on the caller's channel: they hung up meanwhile
            raise_hangup(call)
        log.warning(
            "transfer to an outside number failed",
            extra={"call_id": call.record_id, "error": str(exc)},
        )
        if not answered:
            await ivr.step(call, "outside_no_answer", "dial_failed")
    finally:
        ivr.leg_closed(leg)
        with contextlib.suppress(AriError, OSError):
            await ivr.ari.hangup(leg)
        with contextlib.suppress(AriError, OSError):
            await ivr.ari.destroy_bridge(bridge)
    if not answered and not call.gone:  # not left wondering: told before the line drops
        with contextlib.suppress(AriError, OSError, NeedsAgent):
            await ivr.ari.moh(call.channel_id, False)
            await ivr.say(call, prompt("transfer_failed", call.lang), interruptible=False)
