"""Queues and their members: ``/api/queues``, ``/api/queues/{id}/members``.

Admins change them; supervisors read them, agents list them (to pick transfer
targets). After any change ACD reloads its configuration.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.api.common import (
    ID,
    LANGUAGES,
    NEW_ID,
    not_found,
    path_id,
    reload_acd,
    unit_in_scope,
)
from hotline.api.errors import Fields, bad_request, json_body, json_error, read_json
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, in_scope, require_user
from hotline.roles import ADMIN_ONLY, STAFF, SUPERVISING, TAKES_CONTACTS
from hotline.store.models import Queue, QueueMember, User

STRATEGIES = frozenset(
    {"linear", "round_robin", "fewest_answered", "longest_idle", "agent_priority", "sticky"}
)
_INTENT = re.compile(r"^[a-z0-9_]{1,64}$")
_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_DAY = 86_400
MAX_MEMBERS = 500
MAX_WINDOWS = 14
MAX_INTENTS = 50


def queue_json(queue: Queue) -> dict[str, Any]:
    return {
        "id": queue.id,
        "name": queue.name,
        "org_unit_id": queue.org_unit_id,
        "strategy": queue.strategy,
        "language": queue.language,
        "intents": queue.intents,
        "overflow_to": queue.overflow_to,
        "overflow_after": queue.overflow_after,
        "max_wait": queue.max_wait,
        "offer_timeout": queue.offer_timeout,
        "wrap_up": queue.wrap_up,
        "sticky_window": queue.sticky_window,
        "is_default": queue.is_default,
    }


_QUEUE_FIELDS = frozenset(
    {
        "id",
        "name",
        "org_unit_id",
        "strategy",
        "language",
        "intents",
        "overflow_to",
        "overflow_after",
        "max_wait",
        "offer_timeout",
        "wrap_up",
        "sticky_window",
        "is_default",
    }
)


async def _scoped_queue(session: AsyncSession, me: CurrentUser, queue_id: str) -> Queue:
    queue = await session.get(Queue, queue_id)
    if queue is None or not in_scope(me, queue.org_unit_id):
        raise not_found()
    return queue


def _intents(f: Fields) -> list[str] | None:
    value = f.data.get("intents")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_INTENTS:
        raise bad_request(f"intents must be a list of at most {MAX_INTENTS} intent names")
    if not all(isinstance(v, str) and _INTENT.fullmatch(v) for v in value):
        raise bad_request("intents: each must be an intent name like report_crime")
    return sorted(set(value)) or None


async def _apply_queue(
    session: AsyncSession, me: CurrentUser, queue: Queue, f: Fields
) -> dict[str, Any]:
    """Validate and copy the body's fields onto ``queue``; returns what changed."""
    changed: dict[str, Any] = {}
    if f.has("name"):
        queue.name = f.text("name", max_len=200)
        changed["name"] = True
    if f.has("org_unit_id"):
        unit = f.text("org_unit_id", max_len=64)
        if unit != queue.org_unit_id:
            await unit_in_scope(session, me, unit, "org_unit_id")
            queue.org_unit_id = changed["org_unit_id"] = unit
    if f.has("strategy"):
        strategy = f.text("strategy", max_len=20)
        if strategy not in STRATEGIES:
            raise bad_request("strategy must be one of " + ", ".join(sorted(STRATEGIES)))
        queue.strategy = changed["strategy"] = strategy
    if f.has("language"):
        language = f.opt_text("language", max_len=8)
        if language is not None and language not in LANGUAGES:
            raise bad_request("language must be zh, en or null")
        queue.language = changed["language"] = language
    if f.has("intents"):
        queue.intents = changed["intents"] = _intents(f)
    for key, lo, hi, nullable in (
        ("overflow_after", 0, _DAY, True),
        ("max_wait", 0, _DAY, True),
        ("offer_timeout", 1, 600, False),
        ("wrap_up", 0, 3600, False),
        ("sticky_window", 0, 7 * _DAY, False),
    ):
        if f.has(key):
            value = f.opt_integer(key, lo, hi) if nullable else f.integer(key, lo, hi)
            setattr(queue, key, value)
            changed[key] = value
    if f.has("overflow_to"):
        target = f.opt_text("overflow_to", max_len=64)
        if target is not None:
            await _check_overflow(session, me, queue.id, target)
        queue.overflow_to = changed["overflow_to"] = target
    if f.has("is_default"):
        queue.is_default = changed["is_default"] = f.boolean("is_default")
    return changed


async def _check_overflow(
    session: AsyncSession, me: CurrentUser, queue_id: str, target: str
) -> None:
    if target == queue_id:
        raise bad_request("overflow_to must be another queue")
    other = await session.get(Queue, target)
    if other is None or not in_scope(me, other.org_unit_id):
        raise bad_request("overflow_to: no such queue")
    chain = dict((await session.execute(select(Queue.id, Queue.overflow_to))).all())
    step: str | None = target
    seen = {queue_id}
    while step is not None:
        if step in seen:
            raise bad_request("overflow_to would make a loop")
        seen.add(step)
        step = chain.get(step)


async def _last_default(session: AsyncSession, queue: Queue) -> bool:
    count = await session.scalar(select(func.count()).select_from(Queue).where(Queue.is_default))
    return queue.is_default and (count or 0) <= 1


async def list_queues(request: web.Request) -> web.Response:
    me = require_user(request, *STAFF)  # agents pick transfer targets
    async with request.app[SESSIONS]() as session:
        queues = (
            await session.execute(
                select(Queue).where(Queue.org_unit_id.in_(me.units)).order_by(Queue.id)
            )
        ).scalars()
        return web.json_response({"queues": [queue_json(q) for q in queues]})


async def create_queue(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN_ONLY)
    f = Fields(await json_body(request), _QUEUE_FIELDS)
    queue_id = f.text("id", max_len=64, pattern=NEW_ID)
    f.text("name", max_len=200)  # required on create
    queue = Queue(
        id=queue_id,
        org_unit_id=me.org_unit_id,
        strategy="longest_idle",
        offer_timeout=30,
        wrap_up=0,
        sticky_window=0,
        is_default=False,
    )
    async with request.app[SESSIONS]() as session:
        if await session.get(Queue, queue_id) is not None:
            raise json_error(409, "exists", "a queue with this id exists", "该队列编号已存在")
        if not f.has("org_unit_id"):
            await unit_in_scope(session, me, queue.org_unit_id, "org_unit_id")
        await _apply_queue(session, me, queue, f)
        session.add(queue)
        record(session, me.username, "queue.create", "queue", queue_id)
        try:
            await session.commit()
        except IntegrityError as exc:
            raise json_error(409, "exists", "a queue with this id exists") from exc
    await reload_acd(request)
    return web.json_response({"queue": queue_json(queue)}, status=201)


async def update_queue(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN_ONLY)
    queue_id = path_id(request)
    f = Fields(await json_body(request), _QUEUE_FIELDS - {"id"})
    async with request.app[SESSIONS]() as session:
        queue = await _scoped_queue(session, me, queue_id)
        was_last_default = await _last_default(session, queue)
        changed = await _apply_queue(session, me, queue, f)
        if was_last_default and not queue.is_default:
            raise json_error(
                409,
                "last_default",
                "another queue must be the default first",
                "必须保留一个默认队列",
            )
        record(session, me.username, "queue.update", "queue", queue.id, **changed)
        await session.commit()
    await reload_acd(request)
    return web.json_response({"queue": queue_json(queue)})


async def delete_queue(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN_ONLY)
    queue_id = path_id(request)
    async with request.app[SESSIONS]() as session:
        queue = await _scoped_queue(session, me, queue_id)
        if await _last_default(session, queue):
            raise json_error(
                409,
                "last_default",
                "the last default queue cannot be deleted",
                "不能删除唯一的默认队列",
            )
        if await session.scalar(select(exists().where(Queue.overflow_to == queue.id))):
            raise json_error(
                409, "in_use", "another queue overflows to this one", "其他队列溢出到此队列"
            )
        await session.execute(delete(QueueMember).where(QueueMember.queue_id == queue.id))
        await session.delete(queue)
        record(session, me.username, "queue.delete", "queue", queue.id)
        await session.commit()
    await reload_acd(request)
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ queue members
def _schedule(raw: Any, where: str) -> list[dict[str, Any]] | None:
    """``[{"weekdays":[0..6],"start":"HH:MM","end":"HH:MM"}]``; empty or null = always."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_WINDOWS:
        raise bad_request(f"{where} must be a list of at most {MAX_WINDOWS} windows")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        f = Fields(item, {"weekdays", "start", "end"}, where=f"{where}[{i}]")
        days = f.data.get("weekdays")
        if (
            not isinstance(days, list)
            or not days
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days)
        ):
            raise bad_request(f"{where}[{i}].weekdays must be a list of days 0-6 (Monday = 0)")
        start = f.text("start", max_len=5)
        end = f.text("end", max_len=5)
        if not _HHMM.fullmatch(start) or not (_HHMM.fullmatch(end) or end == "24:00"):
            raise bad_request(f"{where}[{i}]: start and end must be HH:MM")
        if start >= end:
            raise bad_request(f"{where}[{i}]: start must be before end")
        out.append({"weekdays": sorted(set(days)), "start": start, "end": end})
    return out or None


async def _members_json(session: AsyncSession, queue_id: str) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(QueueMember, User)
            .join(User, User.id == QueueMember.user_id)
            .where(QueueMember.queue_id == queue_id)
            .order_by(QueueMember.position, User.username)
        )
    ).all()
    return [
        {
            "user_id": m.user_id,
            "username": u.username,
            "display_name": u.display_name,
            "penalty": m.penalty,
            "schedule": m.schedule,
            "position": m.position,
        }
        for m, u in rows
    ]


async def list_members(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    queue_id = path_id(request)
    async with request.app[SESSIONS]() as session:
        await _scoped_queue(session, me, queue_id)
        return web.json_response({"members": await _members_json(session, queue_id)})


async def replace_members(request: web.Request) -> web.Response:
    """Replace a queue's members; list order is the ``position`` (agent_priority, linear)."""
    me = require_user(request, *ADMIN_ONLY)
    queue_id = path_id(request)
    body = await read_json(request)
    if isinstance(body, dict):
        body = Fields(body, {"members"}).data.get("members")
    if not isinstance(body, list) or len(body) > MAX_MEMBERS:
        raise bad_request(f"body must be a list of at most {MAX_MEMBERS} members")
    wanted: list[tuple[str, int, list[dict[str, Any]] | None]] = []
    for i, item in enumerate(body):
        # username/display_name/position are what GET returns: a round trip is fine.
        f = Fields(
            item,
            {"user_id", "penalty", "schedule"},
            where=f"members[{i}]",
            ignored={"username", "display_name", "position"},
        )
        user_id = f.text("user_id", max_len=64, pattern=ID)
        penalty = f.integer("penalty", 0, 100) if f.has("penalty") else 0
        wanted.append(
            (user_id, penalty, _schedule(f.data.get("schedule"), f"members[{i}].schedule"))
        )
    if len({w[0] for w in wanted}) != len(wanted):
        raise bad_request("a user is listed twice")
    async with request.app[SESSIONS]() as session:
        await _scoped_queue(session, me, queue_id)
        current = set(
            (
                await session.execute(
                    select(QueueMember.user_id).where(QueueMember.queue_id == queue_id)
                )
            ).scalars()
        )
        for user_id, _, _ in wanted:
            user = await session.get(User, user_id)
            # Someone already in the queue may stay even if outside this admin's units.
            if user is None or (user_id not in current and not in_scope(me, user.org_unit_id)):
                raise bad_request(f"user_id {user_id!r}: no such user")
            if user.role not in TAKES_CONTACTS:
                raise bad_request(f"user_id {user_id!r}: only agents and supervisors join queues")
        await session.execute(delete(QueueMember).where(QueueMember.queue_id == queue_id))
        for position, (user_id, penalty, schedule) in enumerate(wanted):
            session.add(
                QueueMember(
                    user_id=user_id,
                    queue_id=queue_id,
                    penalty=penalty,
                    schedule=schedule,
                    position=position,
                )
            )
        record(
            session, me.username, "queue.members", "queue", queue_id, users=[w[0] for w in wanted]
        )
        await session.commit()
        members = await _members_json(session, queue_id)
    await reload_acd(request)
    return web.json_response({"members": members})
