"""An agent's work on a conversation: accept or reject an offer, transfer it, close it.

Only the agent holding a conversation (or a supervisor/admin in scope) may move or
close it; an offer is accepted or rejected by the agent it was offered to.
"""

from __future__ import annotations

from aiohttp import web

from hotline.acd.service import AcdService
from hotline.api.call_control import outside_number, transfer_out
from hotline.api.common import ID, held, visible
from hotline.api.errors import json_error, json_fields
from hotline.appkeys import ACD, HUB, SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, require_user
from hotline.roles import STAFF
from hotline.store.models import AuthorKind, Conversation, ConversationState

DISPOSITIONS = frozenset(
    {"resolved", "info_given", "ticket_created", "referred", "no_response", "abusive"}
)
_MAX_NOTE = 1000


async def accept(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    conversation = await visible(request, user)
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
    conversation = await visible(request, user)
    if not await request.app[ACD].reject(conversation.id, user.id):
        raise json_error(
            409, "not_offered", "this conversation is not offered to you", "该会话未分配给您"
        )
    return web.json_response({"ok": True})


async def transfer(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    body = await json_fields(request)
    queue_id = body.opt_text("queue_id", max_len=64, pattern=ID)
    agent_id = body.opt_text("agent_id", max_len=64, pattern=ID)
    note = body.opt_text("note", max_len=_MAX_NOTE, multiline=True, blank_is_none=True)
    number = outside_number(body)
    conversation = await held(request, user)
    await move(request, user, conversation, queue_id, agent_id, note, number)
    return web.json_response({"ok": True})


async def move(
    request: web.Request,
    user: CurrentUser,
    conversation: Conversation,
    queue_id: str | None,
    agent_id: str | None,
    note: str | None,
    number: str | None,
) -> None:
    """Move a conversation to a queue or an agent, or a call to an outside number.

    The arguments are already type-checked (:class:`Fields`); this checks what they name.
    """
    acd: AcdService = request.app[ACD]
    if number is not None:
        await transfer_out(request, user, conversation, number)
        return
    if queue_id is None and agent_id is None:
        raise json_error(400, "bad_request", "give queue_id, agent_id or (for calls) number")
    if queue_id is not None and queue_id not in acd.queues:
        raise json_error(400, "bad_request", "no such queue")
    if agent_id is not None:
        target = acd.staff.get(agent_id)
        if target is None or target.org_unit_id not in user.units:
            raise json_error(400, "bad_request", "no such agent")
    if conversation.state not in (ConversationState.QUEUED, ConversationState.ASSIGNED):
        raise json_error(409, "not_in_acd", "only queued or assigned conversations move")
    hub = request.app[HUB]
    if note:
        await hub.post(conversation.id, AuthorKind.NOTE, f"[{user.username}] {note}")
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
    disposition = (await json_fields(request)).choice("disposition", DISPOSITIONS)
    conversation = await held(request, user)
    if conversation.state == ConversationState.CLOSED:
        raise json_error(409, "closed", "the conversation is already closed", "会话已结束")
    await request.app[ACD].close(conversation.id, disposition, by=user.username)
    return web.json_response({"ok": True})
