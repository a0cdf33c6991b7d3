"""Recordings for staff: ``/api/recordings/{id}/audio``, streamed with range requests.

A recording may be heard by supervisors and admins in scope (see :mod:`hotline.api.calls`)
and by the agent who took the call; every listen that starts at the beginning of the
file is audited.
"""

from __future__ import annotations

from aiohttp import web

from hotline.api.common import ID
from hotline.api.errors import json_error
from hotline.appkeys import SESSIONS, VOICE
from hotline.audit import record
from hotline.auth import require_user
from hotline.roles import STAFF, SUPERVISING
from hotline.store.models import Conversation, Recording
from recordings.http import Unsatisfiable, parse_range, serve
from recordings.sealed import SealedError, SealedReader


def _no_recording() -> web.HTTPException:
    return json_error(404, "not_found", "no such recording", "没有找到该录音")


async def recording_audio(request: web.Request) -> web.StreamResponse:
    user = require_user(request, *STAFF)
    voice = request.app.get(VOICE)
    recording_id = request.match_info["id"]
    if not ID.fullmatch(recording_id):  # anything else can't exist; don't send it to SQL
        raise _no_recording()
    async with request.app[SESSIONS]() as session:
        rec = await session.get(Recording, recording_id)
        allowed = False
        if rec is not None and rec.file is not None:
            if user.role in SUPERVISING:
                unit = "default"
                if rec.conversation_id is not None:
                    conversation = await session.get(Conversation, rec.conversation_id)
                    unit = conversation.org_unit_id if conversation is not None else unit
                allowed = unit in user.units
            else:
                allowed = rec.agent_id == user.id
        if rec is None or rec.file is None or voice is None:
            raise _no_recording()
        if not allowed:
            raise json_error(
                403, "forbidden", "you may not listen to this recording", "您无权收听该录音"
            )
        try:
            whole = parse_range(request.headers.get("Range"), rec.size or 0)
        except Unsatisfiable:
            whole = None
        if request.method == "GET" and (whole is None or whole[0] == 0):
            record(session, user.id, "recording.listen", "recording", rec.id, call_id=rec.call_id)
            await session.commit()
    try:
        path, key = voice.recording_file(rec.file, rec.id)
        reader = SealedReader.open(path, key, aad=rec.id.encode())
    except (SealedError, OSError):
        raise json_error(
            500,
            "recording_damaged",
            "the recording file is missing or damaged",
            "录音文件缺失或损坏",
        ) from None
    try:
        return await serve(request, reader, "audio/wav")
    finally:
        reader.close()
