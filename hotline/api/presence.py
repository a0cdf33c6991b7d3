"""An agent's own presence: ``GET /api/agents/me`` and ``POST /api/agents/me/status``."""

from __future__ import annotations

from aiohttp import web

from hotline.api.errors import Fields, json_error, json_fields
from hotline.appkeys import ACD
from hotline.auth import require_user
from hotline.roles import STAFF

PRESENCES = frozenset({"ready", "break", "offline", "busy"})


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


def read_presence(body: Fields, allowed: frozenset[str]) -> tuple[str, str | None]:
    """A status body: ``status`` (one of ``allowed``) and an optional ``reason``."""
    return body.choice("status", allowed), body.opt_text("reason", max_len=64, blank_is_none=True)


async def set_my_status(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    status, reason = read_presence(await json_fields(request), PRESENCES)
    acd = request.app[ACD]
    if user.id not in acd.staff:
        raise json_error(409, "not_an_agent", "you are not in any queue")
    await acd.set_presence(user.id, status, reason)
    return web.json_response(acd.status_json(user.id))
