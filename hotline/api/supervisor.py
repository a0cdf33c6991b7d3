"""What supervisors (and admins) do: watch queues and agents, force an agent's status,
reassign a conversation, mark a contact VIP. Each acts only inside their units."""

from __future__ import annotations

from aiohttp import web

from hotline.api.common import ID, visible
from hotline.api.errors import json_error, json_fields
from hotline.api.handling import move
from hotline.api.presence import read_presence
from hotline.appkeys import ACD, SESSIONS
from hotline.audit import record
from hotline.auth import require_user
from hotline.roles import SUPERVISING
from hotline.store.models import Contact


async def force_status(request: web.Request) -> web.Response:
    user = require_user(request, *SUPERVISING)
    status, reason = read_presence(await json_fields(request), frozenset({"break", "offline"}))
    acd = request.app[ACD]
    target = acd.staff.get(request.match_info["id"])
    if target is None or target.org_unit_id not in user.units:
        raise json_error(404, "not_found", "no such agent")
    await acd.set_presence(
        request.match_info["id"], status, reason or "supervisor", by=user.username
    )
    return web.json_response({"ok": True})


async def overview(request: web.Request) -> web.Response:
    user = require_user(request, *SUPERVISING)
    acd = request.app[ACD]
    queues = [q for q in acd.queue_stats() if q["org_unit_id"] in user.units]
    return web.json_response({"queues": queues, "agents": acd.agents(user.units)})


async def set_vip(request: web.Request) -> web.Response:
    """Mark a conversation's contact as VIP: their next handoffs jump the queue."""
    user = require_user(request, *SUPERVISING)
    vip = (await json_fields(request)).boolean("vip")
    conversation = await visible(request, user)
    async with request.app[SESSIONS]() as session:
        contact = await session.get(Contact, conversation.contact_id)
        assert contact is not None
        contact.vip = vip
        record(session, user.username, "contact.vip", "contact", contact.id, vip=vip)
        await session.commit()
    return web.json_response({"contact_id": conversation.contact_id, "vip": vip})


async def reassign(request: web.Request) -> web.Response:
    user = require_user(request, *SUPERVISING)
    agent_id = (await json_fields(request)).text("agent_id", max_len=64, pattern=ID)
    conversation = await visible(request, user)
    await move(request, user, conversation, None, agent_id, None, None)
    return web.json_response({"ok": True})
