"""Canned replies: ``/api/canned`` (any staff read, supervisors and admins write).

Staff see the replies of their units and of the units above (province-wide ones).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from hotline import orgs
from hotline.api.common import LANGUAGES, not_found, unit_in_scope
from hotline.api.errors import Fields, bad_request, json_body
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import in_scope, require_user
from hotline.roles import SUPERVISING
from hotline.store.models import CannedReply

MAX_CANNED_TEXT = 4000


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
        await unit_in_scope(session, me, unit, "org_unit_id")
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
