"""Sign-in and administration endpoints (users, org units, queues, blacklist, canned replies).

Scope: everyone, admins included, works inside their org unit and the units below it.
A record outside that subtree is a 404 when named in the URL (its existence is not
revealed) and a 400 "no such …" when named in a body. Every body is checked field by
field; a bad one is a 400 ``{"error":"bad_request","message":…}`` naming the field.
After any change ACD reloads its configuration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline import accounts, orgs
from hotline.api.agent_ws import AGENT_SOCKETS
from hotline.api.errors import json_body, json_error, read_json
from hotline.appkeys import ACD, SESSIONS, SETTINGS
from hotline.audit import record
from hotline.auth import (
    SESSION_HASH,
    CurrentUser,
    clear_session_cookie,
    in_scope,
    require_user,
    set_session_cookie,
)
from hotline.store.models import (
    AgentStatus,
    Blacklist,
    CannedReply,
    Contact,
    Conversation,
    OrgUnit,
    Queue,
    QueueMember,
    Role,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

ADMIN = (Role.ADMIN,)
SUPERVISING = (Role.SUPERVISOR, Role.ADMIN)
STRATEGIES = frozenset(
    {"linear", "round_robin", "fewest_answered", "longest_idle", "agent_priority", "sticky"}
)
LANGUAGES = frozenset({"zh", "en"})
# Ids people choose (org units, queues); path parameters are checked more loosely.
_NEW_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PATH_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_INTENT = re.compile(r"^[a-z0-9_]{1,64}$")
_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
_DAY = 86_400
MAX_MEMBERS = 500
MAX_WINDOWS = 14
MAX_INTENTS = 50
MAX_CANNED_TEXT = 4000


# ------------------------------------------------------------------ validation
def bad_request(message: str) -> web.HTTPException:
    return json_error(400, "bad_request", message, "请求内容有误：" + message)


def not_found() -> web.HTTPException:
    return json_error(404, "not_found", "no such record", "记录不存在")


class Fields:
    """Typed reads from one JSON object; any problem is a 400 that names the field."""

    def __init__(
        self,
        data: Any,
        allowed: Iterable[str],
        *,
        where: str = "body",
        ignored: Iterable[str] = (),
    ) -> None:
        if not isinstance(data, dict):
            raise bad_request(f"{where} must be a JSON object")
        skip = frozenset(ignored)
        unknown = sorted(set(data) - set(allowed) - skip)
        if unknown:
            raise bad_request(f"{where}: unknown field {unknown[0][:40]!r}")
        self.data = {k: v for k, v in data.items() if k not in skip}
        self.where = where

    def has(self, key: str) -> bool:
        return key in self.data

    def _name(self, key: str) -> str:
        return key if self.where == "body" else f"{self.where}.{key}"

    def text(
        self,
        key: str,
        *,
        max_len: int,
        pattern: re.Pattern[str] | None = None,
        multiline: bool = False,
    ) -> str:
        """A required, non-blank string (stripped), without control characters."""
        value = self.data.get(key)
        if value is None:
            raise bad_request(f"{self._name(key)} is required")
        if not isinstance(value, str):
            raise bad_request(f"{self._name(key)} must be a string")
        value = value.strip()
        if not value:
            raise bad_request(f"{self._name(key)} must not be empty")
        if len(value) > max_len:
            raise bad_request(f"{self._name(key)} is longer than {max_len} characters")
        if (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(value) or not encodable(value):
            raise bad_request(f"{self._name(key)} contains control or invalid characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise bad_request(f"{self._name(key)} has an invalid format")
        return value

    def opt_text(
        self, key: str, *, max_len: int, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        """Absent or null: None; otherwise as :meth:`text`."""
        if self.data.get(key) is None:
            return None
        return self.text(key, max_len=max_len, pattern=pattern)

    def integer(self, key: str, lo: int, hi: int) -> int:
        value = self.data.get(key)
        # bool is an int in Python, never in this API.
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_request(f"{self._name(key)} must be an integer")
        if not lo <= value <= hi:
            raise bad_request(f"{self._name(key)} must be between {lo} and {hi}")
        return value

    def opt_integer(self, key: str, lo: int, hi: int) -> int | None:
        return None if self.data.get(key) is None else self.integer(key, lo, hi)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise bad_request(f"{self._name(key)} must be true or false")
        return value

    def password(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise bad_request(f"{self._name(key)} must be a string")
        try:
            accounts.check_password_rules(value)
        except accounts.AccountError as exc:
            raise bad_request(str(exc)) from exc
        return value


def encodable(text: str) -> bool:
    """False for lone surrogates (JSON allows ``"\\ud800"``; the database does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info.get(name, "")
    if not _PATH_ID.fullmatch(value):
        raise not_found()
    return value


async def reload_acd(request: web.Request) -> None:
    """Tell ACD the configuration changed; a failure is logged, the change stands."""
    acd = request.app.get(ACD)
    if acd is None:
        return
    try:
        await acd.reload()
    except Exception:  # the change is committed; ACD picks it up on its next reload
        log.exception("acd reload failed")


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# ------------------------------------------------------------------ sessions
def me_json(user: User | CurrentUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": str(user.role),
        "org_unit_id": user.org_unit_id,
        "display_name": user.display_name,
    }


async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request("username and password must be strings")
    settings = request.app[SETTINGS]
    sessions = request.app[SESSIONS]
    result = await accounts.login(sessions, settings, username, password, request.remote)
    if isinstance(result, accounts.LoginLocked):
        exc = json_error(
            429,
            "too_many_attempts",
            "too many failed sign-ins; try again later",
            "登录失败次数过多，请稍后再试",
        )
        exc.headers["Retry-After"] = str(result.retry_after)
        raise exc
    if isinstance(result, accounts.LoginFailed):
        raise json_error(401, "bad_credentials", "wrong user name or password", "用户名或密码错误")
    old = request.cookies.get(accounts.SESSION_COOKIE)
    if old:  # a new sign-in replaces whatever session this browser had
        await accounts.close_session(sessions, old, actor=result.user.username)
    response = web.json_response({"csrf": result.session.csrf, "user": me_json(result.user)})
    set_session_cookie(response, result.session, settings)
    response.headers["Cache-Control"] = "no-store"
    return response


async def logout(request: web.Request) -> web.Response:
    user = require_user(request)
    token = request.cookies.get(accounts.SESSION_COOKIE, "")
    await accounts.close_session(request.app[SESSIONS], token, actor=user.username)
    sockets = request.app.get(AGENT_SOCKETS)
    if sockets is not None:
        await sockets.close_session(request[SESSION_HASH])
    response = web.json_response({"ok": True})
    clear_session_cookie(response, request.app[SETTINGS])
    return response


async def get_me(request: web.Request) -> web.Response:
    user = require_user(request)
    response = web.json_response({"csrf": user.csrf, "user": me_json(user)})
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------ users
def user_json(user: User) -> dict[str, Any]:
    return {
        **me_json(user),
        "capacity": user.capacity,
        "active": user.active,
        "created_at": iso(user.created_at),
    }


async def _unit_in_scope(session: AsyncSession, me: CurrentUser, unit_id: str, field: str) -> None:
    if not in_scope(me, unit_id) or await session.get(OrgUnit, unit_id) is None:
        raise bad_request(f"{field}: no such org unit")


async def _scoped_user(session: AsyncSession, me: CurrentUser, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None or not in_scope(me, user.org_unit_id):
        raise not_found()
    return user


async def list_users(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        users = (
            await session.execute(
                select(User).where(User.org_unit_id.in_(me.units)).order_by(User.username)
            )
        ).scalars()
        return web.json_response({"users": [user_json(u) for u in users]})


async def get_user(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    user_id = path_id(request)
    async with request.app[SESSIONS]() as session:
        return web.json_response({"user": user_json(await _scoped_user(session, me, user_id))})


async def create_user(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    f = Fields(
        await json_body(request),
        {"username", "password", "role", "org_unit", "display_name", "capacity"},
    )
    username = f.text("username", max_len=32)
    password = f.password("password")
    role = f.text("role", max_len=16)
    unit = f.opt_text("org_unit", max_len=64) or me.org_unit_id
    display_name = f.opt_text("display_name", max_len=accounts.MAX_DISPLAY_NAME)
    capacity = f.integer("capacity", *accounts.CAPACITY_RANGE) if f.has("capacity") else 3
    async with request.app[SESSIONS]() as session:
        await _unit_in_scope(session, me, unit, "org_unit")
        try:
            user = await accounts.create_user(
                session,
                username=username,
                password=password,
                role=role,
                org_unit_id=unit,
                display_name=display_name,
                capacity=capacity,
            )
            record(
                session, me.username, "user.create", "user", user.id, username=username, role=role
            )
            await session.commit()
        except accounts.AccountError as exc:
            if exc.code == "exists":
                raise json_error(409, "exists", str(exc), "用户名已被使用") from exc
            raise bad_request(str(exc)) from exc
        except IntegrityError as exc:  # the same name created in parallel
            raise json_error(409, "exists", "username: is taken", "用户名已被使用") from exc
    await reload_acd(request)
    return web.json_response({"user": user_json(user)}, status=201)


async def update_user(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    user_id = path_id(request)
    f = Fields(
        await json_body(request),
        {"role", "org_unit", "display_name", "capacity", "password", "active"},
    )
    async with request.app[SESSIONS]() as session:
        user = await _scoped_user(session, me, user_id)
        changed: dict[str, Any] = {}
        if f.has("role"):
            try:
                role = Role(f.text("role", max_len=16))
            except ValueError as exc:
                raise bad_request("role must be one of " + ", ".join(Role)) from exc
            if role.value != user.role:
                _not_self(me, user, "role")
                await _change_role(session, user, role)
                changed["role"] = role.value
        if f.has("org_unit"):
            unit = f.text("org_unit", max_len=64)
            if unit != user.org_unit_id:
                _not_self(me, user, "org unit")
                await _unit_in_scope(session, me, unit, "org_unit")
                user.org_unit_id = changed["org_unit"] = unit
        if f.has("display_name"):
            user.display_name = f.opt_text("display_name", max_len=accounts.MAX_DISPLAY_NAME)
            changed["display_name"] = True
        if f.has("capacity"):
            user.capacity = changed["capacity"] = f.integer("capacity", *accounts.CAPACITY_RANGE)
        if f.has("active"):
            active = f.boolean("active")
            if active != user.active:
                _not_self(me, user, "active state")
                if active:
                    user.active = True
                else:
                    await accounts.deactivate_user(session, user)
                changed["active"] = active
        if f.has("password"):
            keep = request.get(SESSION_HASH) if user.id == me.id else None
            await accounts.set_password(session, user, f.password("password"), keep_session=keep)
            changed["password"] = True  # that it changed, never the value
        record(session, me.username, "user.update", "user", user.id, **changed)
        await session.commit()
    await reload_acd(request)
    return web.json_response({"user": user_json(user)})


def _not_self(me: CurrentUser, user: User, what: str) -> None:
    """Admins can't lock themselves out (and so the last admin can't vanish)."""
    if user.id == me.id:
        raise json_error(
            409, "self", f"you cannot change your own {what}", "不能修改自己的角色、单位或启用状态"
        )


async def _change_role(session: AsyncSession, user: User, role: Role) -> None:
    user.role = role.value
    if role in accounts.AGENT_ROLES:
        await accounts.ensure_agent(session, user)
        return
    # No longer takes conversations: out of every queue, and offline.
    await session.execute(delete(QueueMember).where(QueueMember.user_id == user.id))
    status = await session.get(AgentStatus, user.id)
    if status is not None and status.presence != "offline":
        status.presence, status.reason, status.since = "offline", "role_changed", utcnow()


async def deactivate_user(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    user_id = path_id(request)
    async with request.app[SESSIONS]() as session:
        user = await _scoped_user(session, me, user_id)
        _not_self(me, user, "active state")
        await accounts.deactivate_user(session, user)
        record(session, me.username, "user.deactivate", "user", user.id)
        await session.commit()
    await reload_acd(request)
    sockets = request.app.get(AGENT_SOCKETS)
    if sockets is not None:
        await sockets.close_user(user.id)
    return web.json_response({"user": user_json(user)})


# ------------------------------------------------------------------ org units
def unit_json(unit: OrgUnit) -> dict[str, Any]:
    return {"id": unit.id, "name": unit.name, "parent_id": unit.parent_id}


async def _scoped_unit(session: AsyncSession, me: CurrentUser, unit_id: str) -> OrgUnit:
    unit = await session.get(OrgUnit, unit_id)
    if unit is None or not in_scope(me, unit.id):
        raise not_found()
    return unit


async def _org_changed(request: web.Request) -> None:
    orgs.invalidate(request.app[SESSIONS])
    await reload_acd(request)


async def list_units(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        units = (
            await session.execute(
                select(OrgUnit).where(OrgUnit.id.in_(me.units)).order_by(OrgUnit.id)
            )
        ).scalars()
        return web.json_response({"org_units": [unit_json(u) for u in units]})


async def create_unit(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    f = Fields(await json_body(request), {"id", "name", "parent_id"})
    unit_id = f.text("id", max_len=64, pattern=_NEW_ID)
    name = f.text("name", max_len=200)
    # A unit always hangs below one in scope: a new root would be visible to nobody.
    parent = f.text("parent_id", max_len=64) if f.has("parent_id") else me.org_unit_id
    async with request.app[SESSIONS]() as session:
        await _unit_in_scope(session, me, parent, "parent_id")
        if await session.get(OrgUnit, unit_id) is not None:
            raise json_error(409, "exists", "an org unit with this id exists", "该单位编号已存在")
        unit = OrgUnit(id=unit_id, name=name, parent_id=parent)
        session.add(unit)
        record(session, me.username, "org_unit.create", "org_unit", unit_id, parent_id=parent)
        try:
            await session.commit()
        except IntegrityError as exc:
            raise json_error(409, "exists", "an org unit with this id exists") from exc
    await _org_changed(request)
    return web.json_response({"org_unit": unit_json(unit)}, status=201)


async def update_unit(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    unit_id = path_id(request)
    f = Fields(await json_body(request), {"name", "parent_id"})
    async with request.app[SESSIONS]() as session:
        unit = await _scoped_unit(session, me, unit_id)
        changed: dict[str, Any] = {}
        if f.has("name"):
            unit.name = f.text("name", max_len=200)
            changed["name"] = True
        if f.has("parent_id"):
            parent = f.text("parent_id", max_len=64)
            if parent != unit.parent_id:
                await _unit_in_scope(session, me, parent, "parent_id")
                if parent in (await orgs.read_tree(session)).subtree(unit.id):
                    raise bad_request("parent_id would make a cycle")
                unit.parent_id = changed["parent_id"] = parent
        record(session, me.username, "org_unit.update", "org_unit", unit.id, **changed)
        await session.commit()
    await _org_changed(request)
    return web.json_response({"org_unit": unit_json(unit)})


async def delete_unit(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    unit_id = path_id(request)
    async with request.app[SESSIONS]() as session:
        unit = await _scoped_unit(session, me, unit_id)
        users = exists().where(User.org_unit_id == unit.id)
        children = exists().where(OrgUnit.parent_id == unit.id)
        queues = exists().where(Queue.org_unit_id == unit.id)
        canned = exists().where(CannedReply.org_unit_id == unit.id)
        # Conversations have no foreign key; deleting their unit would orphan them.
        conversations = exists().where(Conversation.org_unit_id == unit.id)
        for what, clause in (
            ("users", users),
            ("child units", children),
            ("queues", queues),
            ("canned replies", canned),
            ("conversations", conversations),
        ):
            if await session.scalar(select(clause)):
                raise json_error(
                    409, "in_use", f"the org unit still has {what}", "该单位下仍有数据，不能删除"
                )
        await session.delete(unit)
        record(session, me.username, "org_unit.delete", "org_unit", unit.id)
        await session.commit()
    await _org_changed(request)
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ queues
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
            await _unit_in_scope(session, me, unit, "org_unit_id")
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
    me = require_user(request, Role.AGENT, *SUPERVISING)  # agents pick transfer targets
    async with request.app[SESSIONS]() as session:
        queues = (
            await session.execute(
                select(Queue).where(Queue.org_unit_id.in_(me.units)).order_by(Queue.id)
            )
        ).scalars()
        return web.json_response({"queues": [queue_json(q) for q in queues]})


async def create_queue(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN)
    f = Fields(await json_body(request), _QUEUE_FIELDS)
    queue_id = f.text("id", max_len=64, pattern=_NEW_ID)
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
            await _unit_in_scope(session, me, queue.org_unit_id, "org_unit_id")
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
    me = require_user(request, *ADMIN)
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
    me = require_user(request, *ADMIN)
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
    me = require_user(request, *ADMIN)
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
        user_id = f.text("user_id", max_len=64, pattern=_PATH_ID)
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
            if user.role not in accounts.AGENT_ROLES:
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


# ------------------------------------------------------------------ blacklist
def blacklist_json(entry: Blacklist) -> dict[str, Any]:
    return {
        "contact_id": entry.contact_id,
        "reason": entry.reason,
        "created_by": entry.created_by,
        "created_at": iso(entry.created_at),
    }


def _contact_in_scope(me: CurrentUser) -> Any:
    """SQL: the contact (``Blacklist``/``Contact`` id) had a conversation in ``me``'s units."""
    return exists().where(
        Conversation.contact_id == Contact.id, Conversation.org_unit_id.in_(me.units)
    )


async def _scoped_contact(session: AsyncSession, me: CurrentUser, contact_id: str) -> Contact:
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id, _contact_in_scope(me))
    )
    if contact is None:
        raise not_found()
    return contact


async def list_blacklist(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        entries = (
            await session.execute(
                select(Blacklist)
                .join(Contact, Contact.id == Blacklist.contact_id)
                .where(_contact_in_scope(me))
                .order_by(Blacklist.created_at.desc())
            )
        ).scalars()
        return web.json_response({"blacklist": [blacklist_json(e) for e in entries]})


async def add_blacklist(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = Fields(await json_body(request), {"contact_id", "conversation_id", "reason"})
    reason = f.text("reason", max_len=200)
    if f.has("contact_id") == f.has("conversation_id"):
        raise bad_request("give exactly one of contact_id and conversation_id")
    async with request.app[SESSIONS]() as session:
        if f.has("conversation_id"):
            conversation_id = f.text("conversation_id", max_len=64, pattern=_PATH_ID)
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None or not in_scope(me, conversation.org_unit_id):
                raise not_found()
            contact_id = conversation.contact_id
        else:
            contact_id = f.text("contact_id", max_len=64, pattern=_PATH_ID)
            await _scoped_contact(session, me, contact_id)
        if await session.get(Blacklist, contact_id) is not None:
            raise json_error(
                409, "exists", "this contact is already blacklisted", "该联系人已在黑名单中"
            )
        entry = Blacklist(contact_id=contact_id, reason=reason, created_by=me.username)
        session.add(entry)
        record(session, me.username, "blacklist.add", "contact", contact_id)
        try:
            await session.commit()
        except IntegrityError as exc:
            raise json_error(409, "exists", "this contact is already blacklisted") from exc
    await reload_acd(request)
    return web.json_response({"entry": blacklist_json(entry)}, status=201)


async def remove_blacklist(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    contact_id = path_id(request, "contact_id")
    async with request.app[SESSIONS]() as session:
        await _scoped_contact(session, me, contact_id)
        entry = await session.get(Blacklist, contact_id)
        if entry is None:
            raise not_found()
        await session.delete(entry)
        record(session, me.username, "blacklist.remove", "contact", contact_id)
        await session.commit()
    await reload_acd(request)
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ canned replies
def canned_json(reply: CannedReply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "org_unit_id": reply.org_unit_id,
        "language": reply.language,
        "title": reply.title,
        "text": reply.text,
    }


async def list_canned(request: web.Request) -> web.Response:
    """Replies of the user's units and of the units above (province-wide ones)."""
    me = require_user(request)
    lang = request.query.get("lang")
    if lang is not None and lang not in LANGUAGES:
        raise bad_request("lang must be zh or en")
    tree = await orgs.load_tree(request.app[SESSIONS])
    units = me.units | set(tree.ancestors(me.org_unit_id))
    query = select(CannedReply).where(CannedReply.org_unit_id.in_(units))
    if lang is not None:
        query = query.where(CannedReply.language == lang)
    async with request.app[SESSIONS]() as session:
        replies = (await session.execute(query.order_by(CannedReply.title))).scalars()
        return web.json_response({"canned": [canned_json(r) for r in replies]})


async def create_canned(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = Fields(await json_body(request), {"language", "title", "text", "org_unit_id"})
    language = f.text("language", max_len=8)
    if language not in LANGUAGES:
        raise bad_request("language must be zh or en")
    title = f.text("title", max_len=100)
    text = f.text("text", max_len=MAX_CANNED_TEXT, multiline=True)
    unit = f.opt_text("org_unit_id", max_len=64) or me.org_unit_id
    async with request.app[SESSIONS]() as session:
        await _unit_in_scope(session, me, unit, "org_unit_id")
        reply = CannedReply(org_unit_id=unit, language=language, title=title, text=text)
        session.add(reply)
        await session.flush()
        record(session, me.username, "canned.create", "canned_reply", reply.id)
        await session.commit()
    return web.json_response({"canned": canned_json(reply)}, status=201)


async def delete_canned(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    raw = request.match_info.get("id", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise not_found()
    async with request.app[SESSIONS]() as session:
        reply = await session.get(CannedReply, int(raw))
        if reply is None or not in_scope(me, reply.org_unit_id):
            raise not_found()
        await session.delete(reply)
        record(session, me.username, "canned.delete", "canned_reply", reply.id)
        await session.commit()
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    """Register /api/login, /api/logout, /api/me and the admin CRUD routes."""
    r = app.router
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_get("/api/me", get_me)
    r.add_get("/api/users", list_users)
    r.add_post("/api/users", create_user)
    r.add_get("/api/users/{id}", get_user)
    r.add_patch("/api/users/{id}", update_user)
    r.add_delete("/api/users/{id}", deactivate_user)
    r.add_get("/api/org-units", list_units)
    r.add_post("/api/org-units", create_unit)
    r.add_patch("/api/org-units/{id}", update_unit)
    r.add_delete("/api/org-units/{id}", delete_unit)
    r.add_get("/api/queues", list_queues)
    r.add_post("/api/queues", create_queue)
    r.add_patch("/api/queues/{id}", update_queue)
    r.add_delete("/api/queues/{id}", delete_queue)
    r.add_get("/api/queues/{id}/members", list_members)
    r.add_put("/api/queues/{id}/members", replace_members)
    r.add_get("/api/blacklist", list_blacklist)
    r.add_post("/api/blacklist", add_blacklist)
    r.add_delete("/api/blacklist/{contact_id}", remove_blacklist)
    r.add_get("/api/canned", list_canned)
    r.add_post("/api/canned", create_canned)
    r.add_delete("/api/canned/{id}", delete_canned)
