"""Linked contacts (one citizen across channels, ``hotline.contacts``) for staff.

* ``POST /api/contacts/{contact_id}/links`` ``{"conversation_id": ...}``: a supervisor
  links the contact with the contact of another conversation (both in their units).
* ``DELETE /api/contacts/{contact_id}/link``: takes the contact out of its person; the
  agent holding a conversation of that person may, and so may a supervisor.

Both are audited (``contact.link`` / ``contact.unlink``) and answer with the links as the
screen pop shows them. A contact is in scope when it had a conversation in the user's
units; one outside is a 404, as for the blacklist.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import exists, select

from hotline.api.common import ID, not_found, path_id
from hotline.api.errors import Fields, bad_request, json_body, json_error
from hotline.appkeys import HUB, SESSIONS
from hotline.auth import CurrentUser, in_scope, require_user
from hotline.contacts import AlreadyLinked, person_contacts
from hotline.roles import STAFF, SUPERVISING
from hotline.store.models import Contact, Conversation


async def _scoped_contact(request: web.Request, me: CurrentUser) -> Contact:
    contact_id = path_id(request, "contact_id")
    async with request.app[SESSIONS]() as session:
        contact: Contact | None = await session.scalar(
            select(Contact).where(
                Contact.id == contact_id,
                exists().where(
                    Conversation.contact_id == Contact.id,
                    Conversation.org_unit_id.in_(me.units),
                ),
            )
        )
    if contact is None:
        raise not_found()
    return contact


async def _links(request: web.Request, contact_id: str) -> web.Response:
    async with request.app[SESSIONS]() as session:
        contact = await session.get(Contact, contact_id)
        links = await request.app[HUB].links.links_of(session, contact) if contact else []
    return web.json_response({"contact_id": contact_id, "links": links})


async def link_contacts(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = Fields(await json_body(request), {"conversation_id"})
    conversation_id = f.text("conversation_id", max_len=64, pattern=ID)
    contact = await _scoped_contact(request, me)
    async with request.app[SESSIONS]() as session:
        conversation = await session.get(Conversation, conversation_id)
    if conversation is None or not in_scope(me, conversation.org_unit_id):
        raise json_error(
            400,
            "bad_request",
            "conversation_id: no such conversation",
            "请求内容有误：conversation_id 对应的会话不存在",
        )
    try:
        await request.app[HUB].links.link(
            contact.id,
            conversation.contact_id,
            how="supervisor",
            by=me.username,
            conversation_id=conversation.id,
        )
    except AlreadyLinked as exc:
        raise json_error(
            409,
            "already_linked",
            "these contacts are already one citizen",
            "这两个联系人已经关联为同一人",
        ) from exc
    except LookupError as exc:  # the other contact went away meanwhile
        raise bad_request("conversation_id: no such conversation") from exc
    response = await _links(request, contact.id)
    response.set_status(201)
    return response


async def unlink_contact(request: web.Request) -> web.Response:
    me = require_user(request, *STAFF)
    contact = await _scoped_contact(request, me)
    if contact.person_id is None:
        raise json_error(
            409,
            "not_linked",
            "this contact is not linked with another",
            "该联系人未与其他联系人关联",
        )
    if me.role not in SUPERVISING:
        # The agent of a conversation of this citizen (whose screen pop shows the link).
        async with request.app[SESSIONS]() as session:
            holds = await session.scalar(
                select(
                    exists().where(
                        Conversation.agent_id == me.id,
                        Conversation.contact_id.in_(person_contacts(contact.id)),
                    )
                )
            )
        if not holds:
            raise json_error(
                403,
                "not_yours",
                "only the agent of this citizen's conversation or a supervisor may undo a link",
                "只有处理该来访人会话的坐席或班长可以解除关联",
            )
    if not await request.app[HUB].links.unlink(contact.id, by=me.username):
        raise json_error(
            409,
            "not_linked",
            "this contact is not linked with another",
            "该联系人未与其他联系人关联",
        )
    return await _links(request, contact.id)
