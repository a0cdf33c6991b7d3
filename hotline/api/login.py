"""Sign-in, sign-out and ``/api/me``: the staff session (see ``docs/agent-api.md``)."""

from __future__ import annotations

from aiohttp import web

from hotline import accounts
from hotline.api.agent_ws import AGENT_SOCKETS
from hotline.api.common import me_json
from hotline.api.errors import bad_request, json_body, json_error
from hotline.appkeys import SESSIONS, SETTINGS
from hotline.auth import SESSION_HASH, clear_session_cookie, require_user, set_session_cookie


async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request("username and password must be strings")
    settings = request.app[SETTINGS]
    sessions = request.app[SESSIONS]
    result = await accounts.login(sessions, settings, username, password, request.remote)
    if isinstance(result, accounts.LoginLocked):
        exc = json_error(
            429,
            "too_many_attempts",
            "too many failed sign-ins; try again later",
            "登录失败次数过多，请稍后再试",
        )
        exc.headers["Retry-After"] = str(result.retry_after)
        raise exc
    if isinstance(result, accounts.LoginFailed):
        raise json_error(401, "bad_credentials", "wrong user name or password", "用户名或密码错误")
    old = request.cookies.get(accounts.SESSION_COOKIE)
    if old:  # a new sign-in replaces whatever session this browser had
        await accounts.close_session(sessions, old, actor=result.user.username)
    response = web.json_response({"csrf": result.session.csrf, "user": me_json(result.user)})
    set_session_cookie(response, result.session, settings)
    response.headers["Cache-Control"] = "no-store"
    return response


async def logout(request: web.Request) -> web.Response:
    user = require_user(request)
    token = request.cookies.get(accounts.SESSION_COOKIE, "")
    await accounts.close_session(request.app[SESSIONS], token, actor=user.username)
    sockets = request.app.get(AGENT_SOCKETS)
    if sockets is not None:
        await sockets.close_session(request[SESSION_HASH])
    response = web.json_response({"ok": True})
    clear_session_cookie(response, request.app[SETTINGS])
    return response


async def get_me(request: web.Request) -> web.Response:
    user = require_user(request)
    response = web.json_response({"csrf": user.csrf, "user": me_json(user)})
    response.headers["Cache-Control"] = "no-store"
    return response
