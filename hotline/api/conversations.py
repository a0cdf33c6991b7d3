"""Staff endpoints for conversations and agent status (see ``docs/agent-api.md``).

Scope rule: staff see conversations of their org unit and the units below it; anything
else is a 404, so a conversation's existence does not leak across units. Only the
agent holding a conversation (or a supervisor/admin in scope) may act on it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from sqlalchemy import select

from hotline.acd.service import AcdService, as_item
from hotline.api import calls
from hotline.api.errors import json_body, json_error
from hotline.appkeys import ACD, HUB, KB, SESSIONS, SETTINGS, VOICE
from hotline.audit import record
from hotline.auth import CurrentUser, require_user
from hotline.conversations import earlier_conversations
from hotline.lang import parse
from hotline.store.models import (
    AuthorKind,
    Blacklist,
    Contact,
    Conversation,
    ConversationState,
    Message,
    Role,
    Ticket,
    TicketKind,
    TicketStatus,
)
from hotline.vault import Identity

log = logging.getLogger(__name__)

STAFF = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
SUPERVISING = (Role.SUPERVISOR, Role.ADMIN)
IDENTITY_FIELDS = ("reporter_name", "reporter_phone", "reporter_id")
DISPOSITIONS = frozenset(
    {"resolved", "info_given", "ticket_created", "referred", "no_response", "abusive"}
)
PRESENCES = frozenset({"ready", "break", "offline", "busy"})
_MAX_NOTE = 1000
_NUMBER = re.compile(r"\+?[0-9]{1,32}")


class SendError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def summary(conversation: Conversation, last_text: str | None = None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": conversation.id,
        "state": conversation.state,
        "channel": conversation.channel,
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


async def _visible(request: web.Request, user: CurrentUser) -> Conversation:
    """The conversation in the URL if this user may see it, else 404."""
    async with request.app[SESSIONS]() as session:
        conversation: Conversation | None = await session.get(
            Conversation, request.match_info["id"]
        )
    if conversation is None or conversation.org_unit_id not in user.units:
        raise json_error(404, "not_found", "no such conversation", "没有找到该会话")
    return conversation


def _may_act(user: CurrentUser, conversation: Conversation) -> bool:
    return conversation.agent_id == user.id or user.role in SUPERVISING


async def _held(request: web.Request, user: CurrentUser) -> Conversation:
    conversation = await _visible(request, user)
    if not _may_act(user, conversation):
        raise json_error(
            403, "not_yours", "this conversation is held by another agent", "该会话由其他坐席处理"
        )
    return conversation


# ---------------------------------------------------------------- listing
async def list_conversations(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    state = request.query.get("state")
    valid = {s.value for s in ConversationState}
    if state is not None and state not in valid:
        raise json_error(400, "bad_request", f"state must be one of {sorted(valid)}")
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise json_error(400, "bad_request", "limit must be 1-200")
    text = request.query.get("q", "").strip()
    if len(text) > 200:
        raise json_error(400, "bad_request", "q is longer than 200 characters")
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
    query = (
        query.add_columns(last_text).order_by(Conversation.updated_at.desc()).limit(int(raw_limit))
    )
    async with request.app[SESSIONS]() as session:
        rows = (await session.execute(query)).all()
    return web.json_response({"conversations": [summary(c, last) for c, last in rows]})


async def conversation_detail(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _visible(request, user)
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
    call = (
        await calls.call_of_conversation(request, conversation.id)
        if conversation.channel == "voice"
        else None
    )
    return web.json_response(
        {
            "conversation": summary(conversation),
            "call": call,
            "transcript": [as_item(m) for m in history],
            "fields": fields,
            "identity": identity,
            "contact": {
                "id": conversation.contact_id,
                "channel": contact.channel if contact else conversation.channel,
                "vip": bool(contact and contact.vip),
                "blacklisted": blacklisted,
                "previous": [
                    {
                        "id": p.id,
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
            "ticket": _ticket_json(ticket) if ticket else None,
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


async def _transfer_out(
    request: web.Request, user: CurrentUser, conversation: Conversation, number: object
) -> None:
    """A blind transfer of a phone call to an outside number."""
    voice = request.app.get(VOICE)
    if conversation.channel != "voice" or voice is None:
        raise json_error(400, "bad_request", "only phone calls go to an outside number")
    if not isinstance(number, str) or not _NUMBER.fullmatch(number):
        raise json_error(
            400,
            "bad_request",
            "number must be digits (an optional leading +), at most 32",
            "号码只能包含数字（可以+开头），最多32位",
        )
    state = voice.ivr.call_state(conversation.id)
    if state is None:
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    if state != "talking":
        raise json_error(
            409,
            "not_talking",
            "only a call connected to an agent can be transferred out",
            "只有已接通坐席的通话才能转外线",
        )
    event = {"type": "hl_transfer_out", "number": number, "by": user.id}
    if not await voice.ivr.notify(conversation.id, event):
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    async with request.app[SESSIONS]() as session:
        record(
            session, user.id, "call.transfer_out", "conversation", conversation.id, number=number
        )
        await session.commit()


def _ticket_json(ticket: Ticket) -> dict[str, Any]:
    return {
        "case_code": ticket.case_code,
        "kind": ticket.kind,
        "status": ticket.status,
        "fields": ticket.fields,
        "reply_due": ticket.reply_due.isoformat(),
        "result_due": ticket.result_due.isoformat(),
    }


async def reveal_identity(request: web.Request) -> web.Response:
    """Identity for a supervisor or admin of the unit; every reveal is audited."""
    user = require_user(request, *SUPERVISING)
    conversation = await _visible(request, user)
    hub = request.app[HUB]
    fields = hub.open_fields(conversation)
    found: dict[str, str] = {}
    async with request.app[SESSIONS]() as session:
        ticket = (
            await session.execute(
                select(Ticket).where(
                    Ticket.conversation_id == conversation.id, Ticket.identity_id.is_not(None)
                )
            )
        ).scalar_one_or_none()
        if ticket is not None and ticket.identity_id is not None:
            who = await hub.tickets.vault.reveal(
                session, ticket.identity_id, actor=user.username, reason="agent console"
            )
            found = {"name": who.name, "phone": who.phone, "id_number": who.id_number}
        elif any(fields.get(k) for k in IDENTITY_FIELDS):
            record(
                session,
                user.username,
                "identity.reveal",
                "conversation",
                conversation.id,
                reason="agent console",
            )
            found = {
                "name": fields.get("reporter_name", ""),
                "phone": fields.get("reporter_phone", ""),
                "id_number": fields.get("reporter_id", ""),
            }
        else:
            raise json_error(
                404, "no_identity", "this reporter gave no identity", "举报人未提供身份"
            )
        await session.commit()
    log.info("identity revealed", extra={"conversation_id": conversation.id, "by": user.id})
    return web.json_response({"identity": found})


# ---------------------------------------------------------------- actions
async def accept(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _visible(request, user)
    result = await request.app[ACD].accept(conversation.id, user.id)
    if not result.ok:
        texts = {
            "taken": ("another agent has already accepted it", "该会话已被其他坐席接起"),
            "not_offered": ("this conversation is not offered to you", "该会话未分配给您"),
            "gone": ("the citizen is no longer waiting", "来访者已离开队列"),
        }
        en, zh = texts.get(result.reason or "", ("cannot accept", "无法接起"))
        raise json_error(409, result.reason or "conflict", en, zh)
    return web.json_response({"ok": True})


async def reject(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _visible(request, user)
    if not await request.app[ACD].reject(conversation.id, user.id):
        raise json_error(
            409, "not_offered", "this conversation is not offered to you", "该会话未分配给您"
        )
    return web.json_response({"ok": True})


async def send_agent_message(
    request: web.Request, user: CurrentUser, conversation_id: str, text: object
) -> dict[str, Any]:
    """Shared by ``POST …/messages`` and the socket's ``send`` frame."""
    limit = request.app[SETTINGS].max_text_chars
    if not isinstance(text, str) or not text.strip():
        raise SendError("empty_text", "text must be a non-empty string")
    if len(text) > limit:
        raise SendError("text_too_long", f"text is longer than {limit} characters")
    async with request.app[SESSIONS]() as session:
        conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.org_unit_id not in user.units:
        raise SendError("not_found", "no such conversation")
    if conversation.state != ConversationState.ASSIGNED or not _may_act(user, conversation):
        raise SendError("not_yours", "accept the conversation before replying")
    message = await request.app[HUB].post(conversation.id, AuthorKind.AGENT, text.strip())
    return as_item(message)


async def post_message(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    body = await json_body(request)
    try:
        message = await send_agent_message(
            request, user, request.match_info["id"], body.get("text")
        )
    except SendError as exc:
        status = {"not_found": 404, "not_yours": 409}.get(exc.code, 400)
        raise json_error(status, exc.code, str(exc)) from exc
    return web.json_response({"message": message}, status=201)


async def transfer(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _held(request, user)
    body = await json_body(request)
    await _do_transfer(request, user, conversation, body)
    return web.json_response({"ok": True})


async def hangup(request: web.Request) -> web.Response:
    """End the agent's side of a phone call; the caller stays on for the survey."""
    user = require_user(request, *STAFF)
    conversation = await _held(request, user)
    voice = request.app.get(VOICE)
    if conversation.channel != "voice" or voice is None:
        raise json_error(
            409, "not_a_call", "this conversation is not a phone call", "该会话不是电话"
        )
    if not await voice.ivr.notify(conversation.id, {"type": "hl_hangup", "by": user.id}):
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    return web.json_response({"ok": True})


async def reassign(request: web.Request) -> web.Response:
    user = require_user(request, *SUPERVISING)
    conversation = await _visible(request, user)
    body = await json_body(request)
    if not isinstance(body.get("agent_id"), str):
        raise json_error(400, "bad_request", "agent_id is required")
    await _do_transfer(request, user, conversation, {"agent_id": body["agent_id"]})
    return web.json_response({"ok": True})


async def _do_transfer(
    request: web.Request, user: CurrentUser, conversation: Conversation, body: dict[str, Any]
) -> None:
    acd: AcdService = request.app[ACD]
    queue_id, agent_id, note = body.get("queue_id"), body.get("agent_id"), body.get("note")
    if body.get("number") is not None:
        await _transfer_out(request, user, conversation, body["number"])
        return
    if queue_id is None and agent_id is None:
        raise json_error(400, "bad_request", "give queue_id, agent_id or (for calls) number")
    if queue_id is not None and (not isinstance(queue_id, str) or queue_id not in acd.queues):
        raise json_error(400, "bad_request", "no such queue")
    if agent_id is not None:
        target = acd.staff.get(agent_id) if isinstance(agent_id, str) else None
        if target is None or target.org_unit_id not in user.units:
            raise json_error(400, "bad_request", "no such agent")
    if note is not None and (not isinstance(note, str) or len(note) > _MAX_NOTE):
        raise json_error(400, "bad_request", f"note must be text of at most {_MAX_NOTE} characters")
    if conversation.state not in (ConversationState.QUEUED, ConversationState.ASSIGNED):
        raise json_error(409, "not_in_acd", "only queued or assigned conversations move")
    hub = request.app[HUB]
    if note:
        await hub.post(conversation.id, AuthorKind.NOTE, f"[{user.username}] {note.strip()}")
    await acd.transfer(conversation.id, queue_id=queue_id, agent_id=agent_id)
    async with request.app[SESSIONS]() as session:
        record(
            session,
            user.username,
            "conversation.transfer",
            "conversation",
            conversation.id,
            queue=queue_id,
            agent=agent_id,
        )
        await session.commit()


async def close(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _held(request, user)
    body = await json_body(request)
    disposition = body.get("disposition")
    if disposition not in DISPOSITIONS:
        raise json_error(400, "bad_request", f"disposition must be one of {sorted(DISPOSITIONS)}")
    if conversation.state == ConversationState.CLOSED:
        raise json_error(409, "closed", "the conversation is already closed", "会话已结束")
    await request.app[ACD].close(conversation.id, str(disposition), by=user.username)
    return web.json_response({"ok": True})


async def create_ticket(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _held(request, user)
    body = await json_body(request)
    try:
        kind = TicketKind(str(body.get("kind")))
    except ValueError as exc:
        raise json_error(400, "bad_request", "kind must be a ticket kind") from exc
    fields = body.get("fields")
    if not isinstance(fields, dict) or not any(
        isinstance(v, str) and v.strip() for v in fields.values()
    ):
        raise json_error(400, "bad_request", "fields must be an object with some text")
    hub = request.app[HUB]
    async with request.app[SESSIONS]() as session:
        existing = (
            await session.execute(select(Ticket).where(Ticket.conversation_id == conversation.id))
        ).scalar_one_or_none()
    if existing is not None:
        raise json_error(409, "exists", "this conversation already has a ticket; edit it")
    collected = hub.open_fields(conversation)
    identity = None
    if collected.get("reporter_name"):
        identity = Identity(
            collected["reporter_name"],
            collected.get("reporter_phone", ""),
            collected.get("reporter_id", ""),
        )
    case = await hub.tickets.create(
        kind=kind,
        fields={**collected, **fields},
        identity=identity,
        conversation_id=conversation.id,
        channel=conversation.channel,
        language=conversation.language,
        actor=user.username,
    )
    async with request.app[SESSIONS]() as session:
        ticket = await session.get(Ticket, case.ticket_id)
        assert ticket is not None
        data = _ticket_json(ticket)
    return web.json_response({"ticket": {**data, "pin": case.pin}}, status=201)


async def edit_ticket(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await _held(request, user)
    body = await json_body(request)
    async with request.app[SESSIONS]() as session:
        ticket = (
            await session.execute(select(Ticket).where(Ticket.conversation_id == conversation.id))
        ).scalar_one_or_none()
        if ticket is None:
            raise json_error(404, "not_found", "this conversation has no ticket")
        fields, status = body.get("fields"), body.get("status")
        if fields is not None:
            if not isinstance(fields, dict) or not all(
                isinstance(v, str) and len(v) <= 4000 for v in fields.values()
            ):
                raise json_error(400, "bad_request", "fields must map names to text")
            ticket.fields = {**ticket.fields, **{str(k): v for k, v in fields.items()}}
        if status is not None:
            if status not in {s.value for s in TicketStatus}:
                raise json_error(400, "bad_request", "unknown ticket status")
            ticket.status = status
        record(session, user.username, "ticket.edit", "ticket", ticket.id)
        await session.commit()
        return web.json_response({"ticket": _ticket_json(ticket)})


# ------------------------------------------------------------------ agents
async def me(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    acd = request.app[ACD]
    if user.id not in acd.staff:
        return web.json_response({"status": None, "conversations": [], "offer": None})
    view = acd.agent_view(user.id)
    offer = acd.offer_for(user.id)
    return web.json_response(
        {
            "status": acd.status_json(user.id),
            "conversations": list(view.contacts),
            "offer": offer,
        }
    )


def _presence(body: dict[str, Any], allowed: frozenset[str]) -> tuple[str, str | None]:
    status, reason = body.get("status"), body.get("reason")
    if status not in allowed:
        raise json_error(400, "bad_request", f"status must be one of {sorted(allowed)}")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 64):
        raise json_error(400, "bad_request", "reason must be text of at most 64 characters")
    return str(status), reason


async def set_my_status(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    acd = request.app[ACD]
    if user.id not in acd.staff:
        raise json_error(409, "not_an_agent", "you are not in any queue")
    status, reason = _presence(await json_body(request), PRESENCES)
    await acd.set_presence(user.id, status, reason)
    return web.json_response(acd.status_json(user.id))


async def force_status(request: web.Request) -> web.Response:
    user = require_user(request, *SUPERVISING)
    acd = request.app[ACD]
    target = acd.staff.get(request.match_info["id"])
    if target is None or target.org_unit_id not in user.units:
        raise json_error(404, "not_found", "no such agent")
    status, reason = _presence(await json_body(request), frozenset({"break", "offline"}))
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
    conversation = await _visible(request, user)
    body = await json_body(request)
    if not isinstance(body.get("vip"), bool):
        raise json_error(400, "bad_request", "vip must be true or false")
    async with request.app[SESSIONS]() as session:
        contact = await session.get(Contact, conversation.contact_id)
        assert contact is not None
        contact.vip = body["vip"]
        record(session, user.username, "contact.vip", "contact", contact.id, vip=body["vip"])
        await session.commit()
    return web.json_response({"contact_id": conversation.contact_id, "vip": body["vip"]})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/conversations", list_conversations)
    r.add_get("/api/conversations/{id}", conversation_detail)
    r.add_post("/api/conversations/{id}/identity", reveal_identity)
    r.add_post("/api/conversations/{id}/accept", accept)
    r.add_post("/api/conversations/{id}/reject", reject)
    r.add_post("/api/conversations/{id}/messages", post_message)
    r.add_post("/api/conversations/{id}/transfer", transfer)
    r.add_post("/api/conversations/{id}/hangup", hangup)
    r.add_post("/api/conversations/{id}/reassign", reassign)
    r.add_post("/api/conversations/{id}/vip", set_vip)
    r.add_post("/api/conversations/{id}/close", close)
    r.add_post("/api/conversations/{id}/ticket", create_ticket)
    r.add_patch("/api/conversations/{id}/ticket", edit_ticket)
    r.add_get("/api/agents/me", me)
    r.add_post("/api/agents/me/status", set_my_status)
    r.add_get("/api/supervisor/overview", overview)
    r.add_post("/api/supervisor/agents/{id}/status", force_status)
