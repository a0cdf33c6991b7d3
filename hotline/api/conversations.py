"""Conversations for staff: the list, one conversation's detail, and agents' messages.

Scope rule: staff see conversations of their org unit and the units below it; anything
else is a 404, so a conversation's existence does not leak across units. Only the
agent holding a conversation (or a supervisor/admin in scope) may write in it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from hotline.acd.service import as_item
from hotline.api.calls import call_of_conversation
from hotline.api.common import ID, iso, may_act, query_number, query_text, visible
from hotline.api.errors import clean_text, json_error, json_fields
from hotline.api.identity import IDENTITY_FIELDS
from hotline.api.tickets import ticket_json
from hotline.appkeys import ACD, HUB, KB, SESSIONS, SETTINGS
from hotline.auth import CurrentUser, require_user
from hotline.conversations import earlier_conversations
from hotline.lang import parse
from hotline.ports import Capabilities
from hotline.roles import STAFF, SUPERVISING
from hotline.store.models import (
    AuthorKind,
    Blacklist,
    Contact,
    Conversation,
    ConversationState,
    Message,
    Ticket,
)


class SendError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def summary(
    conversation: Conversation,
    last_text: str | None = None,
    capabilities: Capabilities | None = None,
) -> dict[str, Any]:
    """The conversation object; ``capabilities`` are its channel's (``None``: unknown or
    not enabled), so the console renders by what the channel can do, not by its name."""
    return {
        "id": conversation.id,
        "state": conversation.state,
        "channel": conversation.channel,
        "capabilities": capabilities.as_dict() if capabilities is not None else None,
        "language": conversation.language,
        "intent": conversation.intent,
        "queue_id": conversation.queue_id,
        "agent_id": conversation.agent_id,
        "org_unit_id": conversation.org_unit_id,
        "handoff_reason": conversation.handoff_reason,
        "created_at": iso(conversation.created_at),
        "queued_at": iso(conversation.queued_at),
        "assigned_at": iso(conversation.assigned_at),
        "closed_at": iso(conversation.closed_at),
        "disposition": conversation.disposition,
        "rating": conversation.rating,
        "last_text": last_text,
    }


async def list_conversations(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    state = request.query.get("state")
    valid = {s.value for s in ConversationState}
    if state is not None and state not in valid:
        raise json_error(400, "bad_request", f"state must be one of {sorted(valid)}")
    limit = query_number(request, "limit", 50, 1, 200)
    if limit is None:
        raise json_error(400, "bad_request", "limit must be 1-200")
    text = query_text(request, "q", 200, strip=True)
    query = select(Conversation).where(Conversation.org_unit_id.in_(user.units))
    if state is not None:
        query = query.where(Conversation.state == state)
    if request.query.get("mine") == "1":
        query = query.where(Conversation.agent_id == user.id)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matching = select(Message.conversation_id).where(
            Message.text.ilike(pattern, escape="\\"), Message.author != AuthorKind.NOTE.value
        )
        query = query.where(Conversation.id.in_(matching))
    # The citizen's latest line, in the same query (not one query per row).
    last_text = (
        select(Message.text)
        .where(
            Message.conversation_id == Conversation.id,
            Message.author == AuthorKind.CITIZEN.value,
        )
        .order_by(Message.id.desc())
        .limit(1)
        .correlate(Conversation)
        .scalar_subquery()
    )
    query = query.add_columns(last_text).order_by(Conversation.updated_at.desc()).limit(limit)
    async with request.app[SESSIONS]() as session:
        rows = (await session.execute(query)).all()
    channels = request.app[HUB].channels
    return web.json_response(
        {"conversations": [summary(c, last, channels.capabilities(c.channel)) for c, last in rows]}
    )


async def conversation_detail(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await visible(request, user)
    hub, acd = request.app[HUB], request.app[ACD]
    history = await hub.conversations.history(conversation.id, limit=500)
    fields = hub.open_fields(conversation)
    has_identity = any(fields.get(k) for k in IDENTITY_FIELDS)
    for key in IDENTITY_FIELDS:
        fields.pop(key, None)
    async with request.app[SESSIONS]() as session:
        contact = await session.get(Contact, conversation.contact_id)
        blacklisted = await session.get(Blacklist, conversation.contact_id) is not None
        previous = await earlier_conversations(session, conversation, 20)
        links = await hub.links.links_of(session, contact) if contact is not None else []
        ids = [conversation.id, *(p.id for p in previous)]
        tickets = list(
            (
                await session.execute(
                    select(Ticket)
                    .where(Ticket.conversation_id.in_(ids))
                    .order_by(Ticket.created_at.desc())
                )
            ).scalars()
        )
    ticket = next((t for t in tickets if t.conversation_id == conversation.id), None)
    has_identity = has_identity or (ticket is not None and ticket.identity_id is not None)
    identity = "none"
    if has_identity:
        identity = "revealable" if user.role in SUPERVISING else "hidden"
    last_question = next(
        (
            m.text
            for m in reversed(history)
            if m.author == AuthorKind.CITIZEN.value and m.sealed is None and len(m.text) > 3
        ),
        None,
    )
    suggestions = []
    if last_question:
        lang = parse(conversation.language) or "zh"
        for hit in request.app[KB].search(last_question, lang=lang, limit=3):
            suggestions.append(
                {
                    "id": hit.article.id,
                    "lang": hit.article.lang,
                    "title": hit.article.title,
                    "snippet": hit.article.body[:300],
                }
            )
    place = acd.position(conversation.id)
    view = acd.contact_view(conversation.id)
    capabilities = request.app[HUB].channels.capabilities(conversation.channel)
    call = (
        await call_of_conversation(request, conversation.id, conversation.channel)
        if capabilities is not None and capabilities.media == "realtime"
        else None
    )
    return web.json_response(
        {
            "conversation": summary(conversation, capabilities=capabilities),
            "call": call,
            "transcript": [as_item(m) for m in history],
            "fields": fields,
            "identity": identity,
            "contact": {
                "id": conversation.contact_id,
                "channel": contact.channel if contact else conversation.channel,
                "vip": bool(contact and contact.vip),
                "blacklisted": blacklisted,
                # The contacts linked with this one (hotline.contacts): channels, never
                # addresses; their conversations are in "previous" and "tickets".
                "links": links,
                "previous": [
                    {
                        "id": p.id,
                        "channel": p.channel,
                        "created_at": p.created_at.isoformat(),
                        "state": p.state,
                        "disposition": p.disposition,
                        "rating": p.rating,
                    }
                    for p in previous
                ],
                "tickets": [
                    {
                        "case_code": t.case_code,
                        "kind": t.kind,
                        "status": t.status,
                        "created_at": t.created_at.isoformat(),
                    }
                    for t in tickets
                ],
            },
            "ticket": ticket_json(ticket) if ticket else None,
            "suggestions": suggestions,
            "queue": {
                "position": place[0],
                "eta_seconds": place[1],
                "priority": view.priority if view else 0,
            }
            if place
            else None,
        }
    )


async def send_agent_message(
    request: web.Request, user: CurrentUser, conversation_id: str, text: object
) -> dict[str, Any]:
    """Shared by ``POST …/messages`` and the socket's ``send`` frame."""
    limit = request.app[SETTINGS].max_text_chars
    if not isinstance(text, str) or not text.strip():
        raise SendError("empty_text", "text must be a non-empty string")
    if len(text) > limit:
        raise SendError("text_too_long", f"text is longer than {limit} characters")
    if not clean_text(text):
        raise SendError("bad_text", "text contains control or invalid characters")
    conversation = None
    if ID.fullmatch(conversation_id):  # anything else can't exist; don't send it to SQL
        async with request.app[SESSIONS]() as session:
            conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.org_unit_id not in user.units:
        raise SendError("not_found", "no such conversation")
    if conversation.state != ConversationState.ASSIGNED or not may_act(user, conversation):
        raise SendError("not_yours", "accept the conversation before replying")
    message = await request.app[HUB].post(conversation.id, AuthorKind.AGENT, text.strip())
    return as_item(message)


async def post_message(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    body = await json_fields(request)
    try:
        message = await send_agent_message(
            request, user, request.match_info["id"], body.data.get("text")
        )
    except SendError as exc:
        status = {"not_found": 404, "not_yours": 409}.get(exc.code, 400)
        raise json_error(status, exc.code, str(exc)) from exc
    return web.json_response({"message": message}, status=201)
