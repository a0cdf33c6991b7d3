"""Who is asking: the session middleware, CSRF and role checks for staff requests.

The middleware turns the ``hotline_session`` cookie into a :class:`CurrentUser` for
staff paths and enforces the CSRF header on every state-changing staff request; the
handlers then only say which roles they accept (:func:`require_user`) and check
org-unit scope (:func:`in_scope`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from hotline import orgs
from hotline.accounts import SESSION_COOKIE, NewSession, resolve_session
from hotline.api.errors import json_error
from hotline.appkeys import SESSIONS, SETTINGS
from hotline.clientip import request_address
from hotline.config import Settings
from hotline.store.models import Role

log = logging.getLogger(__name__)

# Paths whose requests carry a staff session. Everything else (the citizen chat,
# /healthz, /api/kb/search stays public because its handler never asks) is untouched.
STAFF_PREFIXES = ("/api/", "/ws/agent", "/console")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT = frozenset({"/api/login"})  # there is no session (nor token) yet
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    username: str
    role: Role
    org_unit_id: str
    display_name: str | None
    csrf: str
    # The unit and every unit below it: what this user may see.
    units: frozenset[str]


USER = web.RequestKey("user", CurrentUser)
# SHA-256 of the cookie of this request's session (lets a password change keep it).
SESSION_HASH = web.RequestKey("session_hash", str)


def current_user(request: web.Request) -> CurrentUser | None:
    user = request.get(USER)
    return user if isinstance(user, CurrentUser) else None


def require_user(request: web.Request, *roles: Role) -> CurrentUser:
    """The signed-in user, else 401; with ``roles``, one of them, else 403."""
    user = current_user(request)
    if user is None:
        raise json_error(401, "unauthenticated", "sign in first", "请先登录")
    if roles and user.role not in roles:
        raise json_error(403, "forbidden", "your role may not do this", "您的角色无权执行此操作")
    return user


def in_scope(user: CurrentUser, org_unit_id: str) -> bool:
    """Whether a record of ``org_unit_id`` is visible to ``user`` (own unit or below)."""
    return org_unit_id in user.units


def set_session_cookie(response: web.StreamResponse, new: NewSession, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="Strict",
    )


def clear_session_cookie(response: web.StreamResponse, settings: Settings) -> None:
    response.del_cookie(
        SESSION_COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="Strict"
    )


async def _resolve(request: web.Request) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return
    sessions = request.app[SESSIONS]
    found = await resolve_session(sessions, request.app[SETTINGS], token)
    if found is None:
        return
    user = found.user
    request[USER] = CurrentUser(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        org_unit_id=user.org_unit_id,
        display_name=user.display_name,
        csrf=found.csrf,
        units=await orgs.subtree(sessions, user.org_unit_id),
    )
    request[SESSION_HASH] = found.token_hash


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Resolve the staff session; state-changing staff requests need it and its CSRF token.

    Behind a trusted proxy (``HOTLINE_TRUSTED_PROXIES``) the request is first re-made
    with ``remote`` set to the client's address, so everything downstream (the sign-in
    throttle, the audit log) counts the client, not the proxy.
    """
    trusted = request.app[SETTINGS].trusted_proxies
    if trusted:
        client = request_address(request, trusted)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
    path = request.path
    if not path.startswith(STAFF_PREFIXES):
        return await handler(request)
    await _resolve(request)
    if request.method in MUTATING and path not in CSRF_EXEMPT:
        user = require_user(request)
        sent = request.headers.get(CSRF_HEADER, "")
        # Header text may carry undecodable bytes; surrogatepass makes any str comparable.
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), user.csrf.encode()):
            log.warning("csrf token missing or wrong", extra={"user_id": user.id})
            raise json_error(
                403,
                "csrf",
                "missing or wrong X-CSRF-Token header",
                "安全令牌缺失或无效，请刷新页面",
            )
    return await handler(request)
