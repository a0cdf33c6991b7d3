"""User accounts: ``/api/users`` (admins change, supervisors read).

Admins can't change their own role, org unit or active state (so the last admin
can't vanish). After any change ACD reloads its configuration.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline import accounts
from hotline.api.agent_ws import AGENT_SOCKETS
from hotline.api.common import iso, me_json, not_found, path_id, reload_acd, unit_in_scope
from hotline.api.errors import Fields, bad_request, json_body, json_error
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import SESSION_HASH, CurrentUser, in_scope, require_user
from hotline.roles import ADMIN_ONLY, SUPERVISING, TAKES_CONTACTS
from hotline.store.models import AgentStatus, QueueMember, Role, User, utcnow


class UserFields(Fields):
    """:class:`hotline.api.errors.Fields` plus the password rules of accounts."""

    def password(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise bad_request(f"{self.name(key)} must be a string")
        try:
            accounts.check_password_rules(value)
        except accounts.AccountError as exc:
            raise bad_request(str(exc)) from exc
        return value


def user_json(user: User) -> dict[str, Any]:
    return {
        **me_json(user),
        "capacity": user.capacity,
        "active": user.active,
        "created_at": iso(user.created_at),
    }


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
    me = require_user(request, *ADMIN_ONLY)
    f = UserFields(
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
        await unit_in_scope(session, me, unit, "org_unit")
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
    me = require_user(request, *ADMIN_ONLY)
    user_id = path_id(request)
    f = UserFields(
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
                await unit_in_scope(session, me, unit, "org_unit")
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
    if role in TAKES_CONTACTS:
        await accounts.ensure_agent(session, user)
        return
    # No longer takes conversations: out of every queue, and offline.
    await session.execute(delete(QueueMember).where(QueueMember.user_id == user.id))
    status = await session.get(AgentStatus, user.id)
    if status is not None and status.presence != "offline":
        status.presence, status.reason, status.since = "offline", "role_changed", utcnow()


async def deactivate_user(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN_ONLY)
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
