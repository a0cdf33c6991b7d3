"""A conversation's ticket: the agent files it (``POST``) and edits it (``PATCH``).

The bot's collected fields go in with what the agent wrote; a reporter's identity
goes to the vault, never into the ticket's fields.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from hotline.api.common import held
from hotline.api.errors import Fields, json_error, json_fields
from hotline.appkeys import HUB, NOTICES, SESSIONS
from hotline.audit import record
from hotline.auth import require_user
from hotline.roles import STAFF
from hotline.store.models import Ticket, TicketKind, TicketStatus
from hotline.vault import Identity

_MAX_TICKET_FIELD = 4000


def ticket_fields(body: Fields) -> dict[str, str] | None:
    """The ``fields`` object of a ticket body: names to text (None when absent)."""
    return body.text_map("fields", max_items=40, max_len=_MAX_TICKET_FIELD)


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    return {
        "case_code": ticket.case_code,
        "kind": ticket.kind,
        "status": ticket.status,
        "fields": ticket.fields,
        "reply_due": ticket.reply_due.isoformat(),
        "result_due": ticket.result_due.isoformat(),
    }


async def create_ticket(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    body = await json_fields(request)
    kind = TicketKind(body.choice("kind", (k.value for k in TicketKind)))
    fields = ticket_fields(body)
    if not fields or not any(v.strip() for v in fields.values()):
        raise json_error(400, "bad_request", "fields must be an object with some text")
    conversation = await held(request, user)
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
        data = ticket_json(ticket)
    return web.json_response({"ticket": {**data, "pin": case.pin}}, status=201)


async def edit_ticket(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    body = await json_fields(request)
    fields = ticket_fields(body)
    status = body.opt_choice("status", (s.value for s in TicketStatus))
    conversation = await held(request, user)
    async with request.app[SESSIONS]() as session:
        ticket = (
            await session.execute(select(Ticket).where(Ticket.conversation_id == conversation.id))
        ).scalar_one_or_none()
        if ticket is None:
            raise json_error(404, "not_found", "this conversation has no ticket")
        if fields is not None:
            ticket.fields = {**ticket.fields, **fields}
        changed = status is not None and status != ticket.status
        if status is not None:
            ticket.status = status
        record(session, user.username, "ticket.edit", "ticket", ticket.id)
        await session.commit()
        body_out = {"ticket": ticket_json(ticket)}
    if changed and status is not None:
        # The reporter asked to hear of changes (by SMS): a prompt to look it up, no content.
        await request.app[NOTICES].case_changed(ticket.id, status=status)
    return web.json_response(body_out)
