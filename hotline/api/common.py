"""What the staff API modules share: ids, scope lookups, query parameters, ACD reload.

Scope rule: staff see records of their org unit and the units below it. A record
outside that subtree is a 404 when named in the URL (its existence is not revealed)
and a 400 "no such …" when named in a body.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.api.errors import bad_request, clean_text, json_error
from hotline.appkeys import ACD, SESSIONS
from hotline.auth import CurrentUser, in_scope
from hotline.roles import SUPERVISING
from hotline.store.models import Conversation, OrgUnit, User

log = logging.getLogger(__name__)

# Ids people choose (org units, queues).
NEW_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Any record id in a path, body or query (uuids, or ids people chose). Nothing else can
# exist, so nothing else is sent to SQL (PostgreSQL refuses NUL with an error).
ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LANGUAGES = frozenset({"zh", "en"})


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def me_json(user: User | CurrentUser) -> dict[str, Any]:
    """Who a staff user is, as sign-in, ``/api/me`` and the socket's hello show it."""
    return {
        "id": user.id,
        "username": user.username,
        "role": str(user.role),
        "org_unit_id": user.org_unit_id,
        "display_name": user.display_name,
    }


# ------------------------------------------------------------------ records by id
def not_found() -> web.HTTPException:
    return json_error(404, "not_found", "no such record", "记录不存在")


def path_id(request: web.Request, name: str = "id") -> str:
    """The id in the URL; one that cannot exist is a 404 without a query."""
    value = request.match_info.get(name, "")
    if not ID.fullmatch(value):
        raise not_found()
    return value


async def unit_in_scope(session: AsyncSession, me: CurrentUser, unit_id: str, field: str) -> None:
    """A body's org unit must exist and be in ``me``'s scope, else a 400 naming ``field``."""
    if not in_scope(me, unit_id) or await session.get(OrgUnit, unit_id) is None:
        raise bad_request(f"{field}: no such org unit")


async def reload_acd(request: web.Request) -> None:
    """Tell ACD the configuration changed; a failure is logged, the change stands."""
    acd = request.app.get(ACD)
    if acd is None:
        return
    try:
        await acd.reload()
    except Exception:  # the change is committed; ACD picks it up on its next reload
        log.exception("acd reload failed")


# ------------------------------------------------------------------ conversations
async def visible(request: web.Request, user: CurrentUser, key: str = "id") -> Conversation:
    """The conversation in the URL (its ``key``) if this user may see it, else 404."""
    conversation_id = request.match_info[key]
    conversation: Conversation | None = None
    if ID.fullmatch(conversation_id):  # anything else can't exist; don't send it to SQL
        async with request.app[SESSIONS]() as session:
            conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.org_unit_id not in user.units:
        raise json_error(404, "not_found", "no such conversation", "没有找到该会话")
    return conversation


def may_act(user: CurrentUser, conversation: Conversation) -> bool:
    """Only the agent holding a conversation, or a supervisor/admin in scope, acts on it."""
    return conversation.agent_id == user.id or user.role in SUPERVISING


async def held(request: web.Request, user: CurrentUser) -> Conversation:
    """The conversation in the URL if this user may act on it (404, else 403)."""
    conversation = await visible(request, user)
    if not may_act(user, conversation):
        raise json_error(
            403, "not_yours", "this conversation is held by another agent", "该会话由其他坐席处理"
        )
    return conversation


# ------------------------------------------------------------------ query strings
def query_text(request: web.Request, name: str, max_len: int, *, strip: bool = False) -> str:
    """A text query parameter ("" when absent). Too long is a 400, and so are control
    characters and NUL (invalid UTF-8 in a URL arrives as U+FFFD, which is stored fine)."""
    value = request.query.get(name, "")
    if strip:
        value = value.strip()
    if len(value) > max_len:
        raise json_error(400, "bad_request", f"{name} is longer than {max_len} characters")
    if not clean_text(value, multiline=False):
        raise bad_request(f"{name} contains control or invalid characters")
    return value


def query_number(request: web.Request, name: str, default: int, lo: int, hi: int) -> int | None:
    """A whole-number query parameter in ``lo..hi`` (``default`` when absent); None when it
    is anything else. ASCII digits only: ``"²".isdigit()`` is true yet ``int()`` refuses
    it, and ``int()`` refuses more than 4,300 digits."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        return None
    value = int(raw)
    return value if lo <= value <= hi else None
