"""Phone calls for staff: the CDR list, recordings (audited listens), agents' phones.

Scope: supervisors and admins see calls whose conversation is in their units (calls that
never reached a person belong to the top unit ``default``); agents see the calls they
took. A recording may be heard by supervisors and admins in scope and by the agent who
took the call; every listen that starts at the beginning of the file is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select

from hotline.api.errors import json_error
from hotline.appkeys import ACD, SESSIONS, VOICE
from hotline.audit import record
from hotline.auth import CurrentUser, require_user
from hotline.store.models import CallRecord, Conversation, Recording, Role, User
from recordings.http import Unsatisfiable, parse_range, serve
from recordings.sealed import SealedError, SealedReader
from voice_ivr import phones

STAFF = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
SUPERVISING = (Role.SUPERVISOR, Role.ADMIN)
DISPOSITIONS = frozenset(
    {"completed", "caller_hangup", "abandoned", "refused", "message", "failed", "transferred_out"}
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise json_error(400, "bad_request", f"{name} must be an ISO 8601 time") from None
    if moment.tzinfo is not None:  # stored times are naive UTC
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _scope(user: CurrentUser) -> Any:
    if user.role not in SUPERVISING:
        return CallRecord.agent_id == user.id
    in_units = select(Conversation.id).where(Conversation.org_unit_id.in_(user.units))
    clauses = [CallRecord.conversation_id.in_(in_units)]
    if "default" in user.units:
        clauses.append(CallRecord.conversation_id.is_(None))
    return or_(*clauses)


async def list_calls(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    query = select(CallRecord).where(_scope(user))
    start, end = _when(request, "from"), _when(request, "to")
    if start is not None:
        query = query.where(CallRecord.started_at >= start)
    if end is not None:
        query = query.where(CallRecord.started_at < end)
    for name, column in (
        ("agent_id", CallRecord.agent_id),
        ("queue_id", CallRecord.queue_id),
        ("caller", CallRecord.caller),
    ):
        value = request.query.get(name)
        if value:
            if len(value) > 64:
                raise json_error(400, "bad_request", f"{name} is longer than 64 characters")
            query = query.where(column == value)
    disposition = request.query.get("disposition")
    if disposition:
        if disposition not in DISPOSITIONS:
            raise json_error(
                400, "bad_request", f"disposition must be one of {sorted(DISPOSITIONS)}"
            )
        query = query.where(CallRecord.disposition == disposition)
    limit, offset = request.query.get("limit", "50"), request.query.get("offset", "0")
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise json_error(400, "bad_request", "limit must be 1-200")
    if not offset.isdigit() or int(offset) > 1_000_000:
        raise json_error(400, "bad_request", "offset must be a number from 0")
    async with request.app[SESSIONS]() as session:
        total = (
            await session.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = list(
            (
                await session.execute(
                    query.order_by(CallRecord.started_at.desc(), CallRecord.id)
                    .limit(int(limit))
                    .offset(int(offset))
                )
            ).scalars()
        )
        ids = [r.id for r in rows]
        recordings: dict[str, Recording] = {}
        for rec in (
            await session.execute(
                select(Recording)
                .where(Recording.call_id.in_(ids), Recording.file.is_not(None))
                .order_by(Recording.started_at)
            )
        ).scalars():
            recordings.setdefault(rec.call_id, rec)
        agent_ids = {r.agent_id for r in rows if r.agent_id}
        names = {
            u.id: u.display_name or u.username
            for u in (await session.execute(select(User).where(User.id.in_(agent_ids)))).scalars()
        }
    return web.json_response(
        {"calls": [_call_json(r, recordings.get(r.id), names) for r in rows], "total": total}
    )


def _call_json(row: CallRecord, rec: Recording | None, names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "caller": row.caller,
        "dialled": row.dialled,
        "conversation_id": row.conversation_id,
        "started_at": _iso(row.started_at),
        "answered_at": _iso(row.answered_at),
        "ended_at": _iso(row.ended_at),
        "queue_id": row.queue_id,
        "agent_id": row.agent_id,
        "agent_name": names.get(row.agent_id or ""),
        "wait_seconds": row.wait_seconds,
        "talk_seconds": row.talk_seconds,
        "disposition": row.disposition,
        "language": row.language,
        "survey": row.survey,
        "ivr_path": row.ivr_path,
        "recording": {"id": rec.id, "duration_seconds": rec.duration_seconds, "kind": rec.kind}
        if rec is not None
        else None,
    }


async def call_of_conversation(request: web.Request, conversation_id: str) -> dict[str, Any] | None:
    """The screen pop's call panel for a voice conversation."""
    async with request.app[SESSIONS]() as session:
        row = (
            await session.execute(
                select(CallRecord)
                .where(CallRecord.conversation_id == conversation_id)
                .order_by(CallRecord.started_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        rec = (
            await session.execute(select(Recording).where(Recording.call_id == row.id).limit(1))
        ).scalar_one_or_none()
    voice = request.app.get(VOICE)
    state = "ended" if row.ended_at is not None else "queued"
    if row.ended_at is None and voice is not None:
        state = voice.ivr.call_state(conversation_id) or state
    return {
        "id": row.id,
        "caller": row.caller,
        "dialled": row.dialled,
        "started_at": _iso(row.started_at),
        "answered_at": _iso(row.answered_at),
        "state": state,
        "ivr_path": row.ivr_path,
        "wait_seconds": row.wait_seconds,
        "talk_seconds": row.talk_seconds,
        "recording_id": rec.id if rec is not None else None,
    }


async def recording_audio(request: web.Request) -> web.StreamResponse:
    user = require_user(request, *STAFF)
    voice = request.app.get(VOICE)
    async with request.app[SESSIONS]() as session:
        rec = await session.get(Recording, request.match_info["id"])
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
            raise json_error(404, "not_found", "no such recording", "没有找到该录音")
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
        reader = SealedReader.open(
            voice.recorder.path_of(rec), voice.recorder.key, aad=rec.id.encode()
        )
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


async def my_phone(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    voice = request.app.get(VOICE)
    if voice is None:
        raise json_error(404, "voice_off", "voice is off on this hotline", "本热线未启用语音")
    async with request.app[SESSIONS]() as session:
        row = await session.get(User, user.id)
    if row is None or row.sip_ha1 is None:
        raise json_error(404, "no_phone", "no phone was issued to you", "尚未为您开通话机")
    endpoint = phones.endpoint_name(row.username)
    settings = voice.settings
    return web.json_response(
        {
            "endpoint": endpoint,
            "registered": await voice.ari.endpoint_online(endpoint),
            "sip_server": f"{settings.sip_host}:{settings.sip_port}",
        }
    )


async def issue_phone(request: web.Request) -> web.Response:
    """A new phone password for an agent (shown once; only its digest is kept)."""
    me = require_user(request, Role.ADMIN)
    voice = request.app.get(VOICE)
    async with request.app[SESSIONS]() as session:
        user = await session.get(User, request.match_info["id"])
        if user is None or user.org_unit_id not in me.units:
            raise json_error(404, "not_found", "no such user", "没有找到该用户")
        endpoint = phones.endpoint_name(user.username)
        password = phones.new_password()
        user.sip_ha1 = phones.digest_ha1(endpoint, password)
        record(session, me.id, "user.phone_issued", "user", user.id)
        await session.commit()
    if voice is not None:
        await voice.sync_phones(request.app[SESSIONS])
    await request.app[ACD].reload()  # the agent may now be offered calls
    settings = voice.settings if voice is not None else None
    return web.json_response(
        {
            "endpoint": endpoint,
            "username": endpoint,
            "password": password,
            "realm": phones.REALM,
            "sip_server": f"{settings.sip_host}:{settings.sip_port}" if settings else None,
        },
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/calls", list_calls)
    r.add_get("/api/recordings/{id}/audio", recording_audio)
    r.add_get("/api/agents/me/phone", my_phone)
    r.add_post("/api/users/{id}/phone", issue_phone)
