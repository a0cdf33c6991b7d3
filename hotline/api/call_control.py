"""Live phone calls: the agent hangs up, or transfers the caller to an outside number.

The call itself runs in its channel, which offers ``hotline.ports.CallControl``;
everything else about a call is a conversation like any other.
"""

from __future__ import annotations

import re

from aiohttp import web

from hotline.api.common import held
from hotline.api.errors import Fields, json_error
from hotline.appkeys import HUB, SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, require_user
from hotline.ports import CallControl
from hotline.roles import STAFF
from hotline.store.models import Conversation

NUMBER = re.compile(r"\+?[0-9]{1,32}")


def outside_number(body: Fields) -> str | None:
    """The ``number`` of a transfer body (absent or null: None), checked before anything."""
    number = body.data.get("number")
    if number is not None and (not isinstance(number, str) or not NUMBER.fullmatch(number)):
        raise bad_number()
    return number


def bad_number() -> web.HTTPException:
    return json_error(
        400,
        "bad_request",
        "number must be digits (an optional leading +), at most 32",
        "号码只能包含数字（可以+开头），最多32位",
    )


def call_control(request: web.Request, conversation: Conversation) -> CallControl | None:
    """The conversation's channel, if it controls live calls."""
    channel = request.app[HUB].channels.get(conversation.channel)
    return channel if isinstance(channel, CallControl) else None


async def transfer_out(
    request: web.Request, user: CurrentUser, conversation: Conversation, number: str
) -> None:
    """A blind transfer of a phone call to an outside number."""
    calls = call_control(request, conversation)
    if calls is None:
        raise json_error(400, "bad_request", "only phone calls go to an outside number")
    if not NUMBER.fullmatch(number):
        raise bad_number()
    state = calls.call_state(conversation.id)
    if state is None:
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    if state != "talking":
        raise json_error(
            409,
            "not_talking",
            "only a call connected to an agent can be transferred out",
            "只有已接通坐席的通话才能转外线",
        )
    if not await calls.transfer_out(conversation.id, number, user.id):
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    async with request.app[SESSIONS]() as session:
        record(
            session, user.id, "call.transfer_out", "conversation", conversation.id, number=number
        )
        await session.commit()


async def hangup(request: web.Request) -> web.Response:
    """End the agent's side of a phone call; the caller stays on for the survey."""
    user = require_user(request, *STAFF)
    conversation = await held(request, user)
    calls = call_control(request, conversation)
    if calls is None:
        raise json_error(
            409, "not_a_call", "this conversation is not a phone call", "该会话不是电话"
        )
    if not await calls.hang_up(conversation.id, user.id):
        raise json_error(409, "call_ended", "the call has already ended", "通话已结束")
    return web.json_response({"ok": True})
