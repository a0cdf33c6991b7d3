"""The blacklist: ``/api/blacklist`` (supervisors and admins).

A contact may be listed by a supervisor whose units it had a conversation in.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.api.common import ID, iso, not_found, path_id, reload_acd
from hotline.api.errors import Fields, bad_request, json_body, json_error
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, in_scope, require_user
from hotline.roles import SUPERVISING
from hotline.store.models import Blacklist, Contact, Conversation


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
            conversation_id = f.text("conversation_id", max_len=64, pattern=ID)
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None or not in_scope(me, conversation.org_unit_id):
                raise not_found()
            contact_id = conversation.contact_id
        else:
            contact_id = f.text("contact_id", max_len=64, pattern=ID)
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
