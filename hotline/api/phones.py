"""Agents' desk phones: an agent's own phone status, and admins issuing a phone."""

from __future__ import annotations

from aiohttp import web

from hotline.api.common import ID
from hotline.api.errors import json_error
from hotline.appkeys import ACD, SESSIONS, VOICE
from hotline.audit import record
from hotline.auth import require_user
from hotline.roles import ADMIN_ONLY, STAFF
from hotline.store.models import User


async def my_phone(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    voice = request.app.get(VOICE)
    if voice is None:
        raise json_error(404, "voice_off", "voice is off on this hotline", "本热线未启用语音")
    async with request.app[SESSIONS]() as session:
        row = await session.get(User, user.id)
    if row is None or row.sip_ha1 is None:
        raise json_error(404, "no_phone", "no phone was issued to you", "尚未为您开通话机")
    endpoint = voice.endpoint_of(row.username)
    return web.json_response(
        {
            "endpoint": endpoint,
            "registered": await voice.phone_online(endpoint),
            "sip_server": voice.sip_server,
        }
    )


async def issue_phone(request: web.Request) -> web.Response:
    """A new phone password for an agent (shown once; only its digest is kept)."""
    me = require_user(request, *ADMIN_ONLY)
    voice = request.app.get(VOICE)
    user_id = request.match_info["id"]
    async with request.app[SESSIONS]() as session:
        user = await session.get(User, user_id) if ID.fullmatch(user_id) else None
        if user is None or user.org_unit_id not in me.units:
            raise json_error(404, "not_found", "no such user", "没有找到该用户")
        if voice is None:
            raise json_error(404, "voice_off", "voice is off on this hotline", "本热线未启用语音")
        phone = voice.new_phone(user.username)
        user.sip_ha1 = phone.digest_ha1
        record(session, me.id, "user.phone_issued", "user", user.id)
        await session.commit()
    await voice.phones_changed()
    await request.app[ACD].reload()  # the agent may now be offered calls
    return web.json_response(
        {
            "endpoint": phone.endpoint,
            "username": phone.endpoint,
            "password": phone.password,
            "realm": phone.realm,
            "sip_server": voice.sip_server,
        },
        headers={"Cache-Control": "no-store"},
    )
