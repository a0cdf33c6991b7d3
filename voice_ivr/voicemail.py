"""A spoken message: after hours, or when nobody can take the call.

The caller speaks after the tone; the recording is transcribed when an ASR model for
the caller's language is present, becomes a ``message`` ticket of the call's
conversation (the hub files it, through the ``Inbox``; after hours the conversation is
opened for it) with the recording attached, and the caller hears the case code and PIN
to follow it up.
"""

from __future__ import annotations

import contextlib
import logging

from hotline.store.models import Recording
from voice_ivr.ari import AriError
from voice_ivr.calls import Call, Calls
from voice_ivr.errors import Hangup, NeedsAgent
from voice_ivr.prompts import prompt, spell

log = logging.getLogger(__name__)

MAX_SECONDS = 180
MAX_SILENCE = 6
MIN_SECONDS = 1.0  # shorter is a hang-up or a cough, not a message


async def take_message(ivr: Calls, call: Call, *, why: str) -> None:
    """Record, transcribe, file; a caller who hangs up instead of pressing # still counts."""
    if ivr.recorder is None:
        await ivr.say(call, prompt("nobody_free", call.lang), interruptible=False)
        return
    await ivr.step(call, "voicemail", why)
    with contextlib.suppress(NeedsAgent):
        intro = prompt("after_hours" if why == "after_hours" else "nobody_free", call.lang)
        await ivr.say(call, prompt("leave_message", call.lang, why=intro), interruptible=False)
    call.keys.clear()
    name = await ivr.recorder.started(
        auto=False,
        call_id=call.record_id,
        conversation_id=call.conversation_id,
        kind="message",
        caller=call.caller,
    )
    hung_up = False
    try:
        await ivr.ari.record(
            f"channels/{call.channel_id}",
            name,
            maxDurationSeconds=str(MAX_SECONDS),
            maxSilenceSeconds=str(MAX_SILENCE),
            beep="true",
            terminateOn="#",
        )
        while not ivr.recorder.finished(name):
            await ivr.next(call, timeout=0.5)
    except Hangup:
        hung_up = True  # Asterisk ends the recording with the channel
    except AriError:
        log.exception("message recording did not start", extra={"call_id": call.record_id})
        ivr.recorder.forget(name)
        raise
    await ivr.recorder.wait(name)
    case = await _file(ivr, call, name)
    if case is None:
        await ivr.step(call, "message_empty")
        if hung_up:  # without a word: the caller gave up (abandoned, if they were queued)
            raise Hangup
        await ivr.say(call, prompt("message_empty", call.lang), interruptible=False)
        await ivr.say(call, prompt("goodbye", call.lang), interruptible=False)
        return
    code, pin = case
    call.disposition = "message"
    await ivr.step(call, "message_saved")
    if hung_up:
        raise Hangup
    text = prompt(
        "message_saved", call.lang, code=spell(code, call.lang), pin=spell(pin, call.lang)
    )
    await ivr.say(call, text, interruptible=False)
    await ivr.say(call, prompt("goodbye", call.lang), interruptible=False)


async def _file(ivr: Calls, call: Call, name: str) -> tuple[str, str] | None:
    """Transcribe, create the ticket, seal the audio; ``None`` when nothing was said."""
    assert ivr.recorder is not None
    path = ivr.recorder.plain_path(name)
    seconds = ivr.recorder.seconds(path)
    if seconds is None or seconds < MIN_SECONDS:
        await ivr.recorder.discard(name)
        return None
    transcript = await ivr.transcribe(path, call.lang)
    details = transcript or prompt("spoken_message", call.lang, seconds=round(seconds))
    conversation_id = call.conversation_id or await ivr.open_conversation(call)
    filed = await ivr.inbox.leave_message(conversation_id, details)
    await ivr.recorder.finish(name)
    # The recording is linked from its row (``recording.ticket_id``), not a ticket field.
    async with ivr.sessions() as session:
        row = await session.get(Recording, name)
        if row is not None:
            row.ticket_id = str(filed.ticket_id)
            row.conversation_id = row.conversation_id or conversation_id
            await session.commit()
    return filed.case_code, filed.pin
