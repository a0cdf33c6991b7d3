"""Org units: ``/api/org-units`` (admins change, supervisors read).

A unit always hangs below one in the admin's scope, never makes a cycle, and is
deleted only when nothing refers to it any more.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline import orgs
from hotline.api.common import NEW_ID, not_found, path_id, reload_acd, unit_in_scope
from hotline.api.errors import Fields, bad_request, json_body, json_error
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, in_scope, require_user
from hotline.roles import ADMIN_ONLY, SUPERVISING
from hotline.store.models import CannedReply, Conversation, OrgUnit, Queue, User


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
    me = require_user(request, *ADMIN_ONLY)
    f = Fields(await json_body(request), {"id", "name", "parent_id"})
    unit_id = f.text("id", max_len=64, pattern=NEW_ID)
    name = f.text("name", max_len=200)
    # A unit always hangs below one in scope: a new root would be visible to nobody.
    parent = f.text("parent_id", max_len=64) if f.has("parent_id") else me.org_unit_id
    async with request.app[SESSIONS]() as session:
        await unit_in_scope(session, me, parent, "parent_id")
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
    me = require_user(request, *ADMIN_ONLY)
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
                await unit_in_scope(session, me, parent, "parent_id")
                if parent in (await orgs.read_tree(session)).subtree(unit.id):
                    raise bad_request("parent_id would make a cycle")
                unit.parent_id = changed["parent_id"] = parent
        record(session, me.username, "org_unit.update", "org_unit", unit.id, **changed)
        await session.commit()
    await _org_changed(request)
    return web.json_response({"org_unit": unit_json(unit)})


async def delete_unit(request: web.Request) -> web.Response:
    me = require_user(request, *ADMIN_ONLY)
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
