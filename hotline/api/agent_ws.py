"""``/ws/agent``: offers, citizen messages, status and queue figures pushed to staff.

The socket is signed in by the session cookie and guarded by the Origin check (a
cookie alone would let any page the agent visits open it). An agent may have several
tabs open; every frame goes to all of them.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

from aiohttp import WSMsgType, web

from hotline.acd.service import AcdService
from hotline.api.common import me_json
from hotline.api.conversations import SendError, send_agent_message
from hotline.api.errors import json_error
from hotline.appkeys import ACD, SETTINGS
from hotline.auth import SESSION_HASH, CurrentUser, require_user
from hotline.origin import origin_allowed
from hotline.roles import SUPERVISING

log = logging.getLogger(__name__)


class AgentSockets:
    """Implements ``AgentPush`` for the ACD service."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._users: dict[web.WebSocketResponse, CurrentUser] = {}
        self._session_of: dict[web.WebSocketResponse, str] = {}

    async def to_agent(self, user_id: str, frame: dict[str, Any]) -> None:
        for ws in list(self._sockets.get(user_id, ())):
            await _send(ws, frame)

    async def to_staff(self, frame: dict[str, Any]) -> None:
        """Queue figures go to supervisors, each seeing the queues of their units."""
        for ws, user in list(self._users.items()):
            if user.role in SUPERVISING:
                mine = [q for q in frame["queues"] if q.get("org_unit_id") in user.units]
                await _send(ws, {**frame, "queues": mine})

    def add(self, user: CurrentUser, ws: web.WebSocketResponse, session_hash: str) -> None:
        self._sockets[user.id].add(ws)
        self._users[ws] = user
        self._session_of[ws] = session_hash

    def remove(self, user: CurrentUser, ws: web.WebSocketResponse) -> None:
        self._users.pop(ws, None)
        self._session_of.pop(ws, None)
        sockets = self._sockets.get(user.id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._sockets[user.id]

    async def close_session(self, session_hash: str) -> None:
        """Logout: the sockets that session opened go too (a socket outlives its request)."""
        for ws, owner in list(self._session_of.items()):
            if owner == session_hash:
                await ws.close(code=4001, message=b"signed out")

    async def close_user(self, user_id: str) -> None:
        """A deactivated account keeps no open socket."""
        for ws in list(self._sockets.get(user_id, ())):
            await ws.close(code=4001, message=b"account deactivated")

    async def close_all(self) -> None:
        for ws in list(self._users):
            await ws.close()


AGENT_SOCKETS = web.AppKey("agent_sockets", AgentSockets)


async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    if ws.closed:
        return
    try:
        await ws.send_json(frame)
    except (ConnectionError, RuntimeError):
        log.info("agent frame to a closing socket skipped")


async def agent_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not origin_allowed(request, settings.allowed_origins):
        log.warning("agent websocket origin rejected")
        raise json_error(403, "origin", "origin not allowed")
    user = require_user(request)
    acd = request.app[ACD]
    sockets = request.app[AGENT_SOCKETS]
    ws = web.WebSocketResponse(max_msg_size=settings.ws_max_frame_bytes, heartbeat=30)
    await ws.prepare(request)
    sockets.add(user, ws, request[SESSION_HASH])
    try:
        await _send(ws, hello(acd, user))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.ERROR:
                    break
                await _send(ws, {"type": "error", "error": "bad_frame", "message": "JSON only"})
                continue
            await _frame(request, user, ws, msg.data)
    finally:
        sockets.remove(user, ws)
    return ws


def hello(acd: AcdService, user: CurrentUser) -> dict[str, Any]:
    """Everything a (re)connecting console needs to rebuild its screen."""
    frame: dict[str, Any] = {
        "type": "hello",
        "user": me_json(user),
        "status": None,
        "conversations": [],
        "offer": None,
    }
    if user.id in acd.staff:
        view = acd.agent_view(user.id)
        frame["status"] = acd.status_json(user.id)
        frame["conversations"] = [c for c in view.contacts if c != view.offer]
        frame["offer"] = acd.offer_for(user.id)
    return frame


async def _frame(
    request: web.Request, user: CurrentUser, ws: web.WebSocketResponse, data: str
) -> None:
    try:
        frame = json.loads(data)
    except ValueError:
        await _send(ws, {"type": "error", "error": "bad_json", "message": "frame is not JSON"})
        return
    if not isinstance(frame, dict):
        await _send(
            ws, {"type": "error", "error": "bad_frame", "message": "frame is not an object"}
        )
        return
    kind = frame.get("type")
    if kind == "ping":
        await _send(ws, {"type": "pong"})
    elif kind == "send":
        client_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        try:
            message = await send_agent_message(
                request, user, str(frame.get("conversation_id", "")), frame.get("text")
            )
        except SendError as exc:
            await _send(
                ws, {"type": "error", "id": client_id, "error": exc.code, "message": str(exc)}
            )
            return
        await _send(ws, {"type": "ack", "id": client_id, "message": message})
    else:
        await _send(ws, {"type": "error", "error": "unknown_type", "message": "unknown frame type"})
