"""Revealing a reporter's identity to a supervisor or admin of the unit, audited."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import select

from hotline.api.common import visible
from hotline.api.errors import json_error
from hotline.appkeys import HUB, SESSIONS
from hotline.audit import record
from hotline.auth import require_user
from hotline.roles import SUPERVISING
from hotline.store.models import Ticket

log = logging.getLogger(__name__)

# The bot's fields that name the reporter: never shown to agents.
IDENTITY_FIELDS = ("reporter_name", "reporter_phone", "reporter_id")


async def reveal_identity(request: web.Request) -> web.Response:
    """Identity for a supervisor or admin of the unit; every reveal is audited."""
    user = require_user(request, *SUPERVISING)
    conversation = await visible(request, user)
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
