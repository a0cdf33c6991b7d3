"""Call records for staff: the CDR list (``/api/calls``) and a voice conversation's call.

Scope: supervisors and admins see calls whose conversation is in their units (calls that
never reached a person belong to the top unit ``default``); agents see the calls they
took.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select

from hotline.api.common import iso, query_number, query_text
from hotline.api.errors import json_error
from hotline.appkeys import HUB, SESSIONS
from hotline.auth import CurrentUser, require_user
from hotline.ports import CallControl
from hotline.roles import STAFF, SUPERVISING
from hotline.store.models import CallRecord, Conversation, Recording, User

DISPOSITIONS = frozenset(
    {"completed", "caller_hangup", "abandoned", "refused", "message", "failed", "transferred_out"}
)


def _when(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise json_error(400, "bad_request", f"{name} must be an ISO 8601 time") from None
    # Times are compared in UTC; a time without an offset is taken as UTC.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


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
        value = query_text(request, name, 64)
        if value:
            query = query.where(column == value)
    disposition = request.query.get("disposition")
    if disposition:
        if disposition not in DISPOSITIONS:
            raise json_error(
                400, "bad_request", f"disposition must be one of {sorted(DISPOSITIONS)}"
            )
        query = query.where(CallRecord.disposition == disposition)
    limit = query_number(request, "limit", 50, 1, 200)
    if limit is None:
        raise json_error(400, "bad_request", "limit must be 1-200")
    offset = query_number(request, "offset", 0, 0, 1_000_000)
    if offset is None:
        raise json_error(400, "bad_request", "offset must be a number from 0")
    async with request.app[SESSIONS]() as session:
        total = (
            await session.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = list(
            (
                await session.execute(
                    query.order_by(CallRecord.started_at.desc(), CallRecord.id)
                    .limit(limit)
                    .offset(offset)
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
        "started_at": iso(row.started_at),
        "answered_at": iso(row.answered_at),
        "ended_at": iso(row.ended_at),
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


async def call_of_conversation(
    request: web.Request, conversation_id: str, conversation_channel: str
) -> dict[str, Any] | None:
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
    channel = request.app[HUB].channels.get(conversation_channel)
    state = "ended" if row.ended_at is not None else "queued"
    if row.ended_at is None and isinstance(channel, CallControl):
        state = channel.call_state(conversation_id) or state
    return {
        "id": row.id,
        "caller": row.caller,
        "dialled": row.dialled,
        "started_at": iso(row.started_at),
        "answered_at": iso(row.answered_at),
        "state": state,
        "ivr_path": row.ivr_path,
        "wait_seconds": row.wait_seconds,
        "talk_seconds": row.talk_seconds,
        "recording_id": rec.id if rec is not None else None,
    }
