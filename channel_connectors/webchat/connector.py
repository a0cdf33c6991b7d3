"""WebSocket connector for the chat widget (``/ws/chat``).

Every frame is validated: a bad frame gets an ``error`` frame and the connection
stays up. Frames larger than ``ws_max_frame_bytes`` close the socket (1009), which
aiohttp enforces before we ever parse them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from hotline.appkeys import HUB
from hotline.channels import OutputChannel
from hotline.config import Settings
from hotline.hub import Hub, InvalidInput
from hotline.lang import Lang, parse
from hotline.messages import Inbound, Outbound
from hotline.origin import origin_allowed
from hotline.store.models import Conversation, ConversationState, Message
from hotline.texts import TEXTS, say

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_UNIT = re.compile(r"^[a-z0-9_.-]{1,64}$")


class RateLimiter:
    """A token bucket: ``rate`` messages per minute with a burst of a quarter of that."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = max(3.0, per_minute / 4)
        self._tokens = self._capacity
        self._at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _history_item(message: Message) -> dict[str, Any]:
    item: dict[str, Any] = {
        "from": message.author,
        "text": message.text,
        "at": message.created_at.isoformat(),
    }
    if message.buttons:
        item["buttons"] = message.buttons
    if message.client_id:
        item["id"] = message.client_id
    return item


class WebChatChannel(OutputChannel):
    name = "webchat"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    def add_routes(self, app: web.Application) -> None:
        app.on_shutdown.append(self._close_sockets)
        app.router.add_get("/", self.index)
        app.router.add_get("/widget.js", self.widget)
        app.router.add_get("/ws/chat", self.websocket)

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def widget(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "widget.js",
            headers={"Cache-Control": "no-cache", "Content-Type": "text/javascript; charset=utf-8"},
        )

    async def _close_sockets(self, _app: web.Application) -> None:
        """Close open chats at shutdown so the server need not wait for them."""
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                await ws.close(code=1001, message=b"server shutdown")

    # ------------------------------------------------------------- delivery
    async def deliver(self, message: Outbound) -> None:
        frame: dict[str, Any] = {
            "type": "message",
            "from": message.author.value,
            "text": message.text,
        }
        if message.buttons:
            frame["buttons"] = [{"title": b.title, "payload": b.payload} for b in message.buttons]
        await self._broadcast(message.conversation_id, frame)

    async def state_changed(self, conversation_id: str, state: ConversationState) -> None:
        await self._broadcast(conversation_id, {"type": "state", "state": state.value})

    async def queue_position(self, conversation_id: str, position: int, eta_seconds: int) -> None:
        await self._broadcast(
            conversation_id, {"type": "queue", "position": position, "eta_seconds": eta_seconds}
        )

    async def busy(self, conversation_id: str, busy: bool) -> None:
        await self._broadcast(conversation_id, {"type": "typing", "on": busy})

    async def _broadcast(self, conversation_id: str, frame: dict[str, Any]) -> None:
        for ws in list(self._sockets.get(conversation_id, ())):
            if not ws.closed:
                try:
                    await ws.send_json(frame)
                except (ConnectionError, RuntimeError):
                    # Stored already: the citizen sees it in the history on reconnect.
                    log.info("delivery to a closing socket skipped")

    # ------------------------------------------------------------ websocket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, self._settings.allowed_origins):
            log.warning(
                "websocket origin rejected", extra={"origin": request.headers.get("Origin")}
            )
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(
            max_msg_size=self._settings.ws_max_frame_bytes, heartbeat=30, autoping=True
        )
        await ws.prepare(request)
        hub = request.app[HUB]
        limiter = RateLimiter(self._settings.ws_messages_per_minute)
        conversation: Conversation | None = None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type != WSMsgType.TEXT:
                    await self._error(ws, "bad_frame", "only JSON text frames are accepted")
                    continue
                frame: dict[str, Any] = {}
                try:
                    frame = self._parse(msg.data)
                    # hello counts too: each one may open a conversation.
                    if frame["type"] in ("hello", "message") and not limiter.allow():
                        raise FrameError("rate_limited", "too many messages; slow down")
                    if frame["type"] == "hello":
                        if conversation is not None:
                            self._sockets[conversation.id].discard(ws)
                        conversation = await self._hello(hub, ws, frame)
                    elif conversation is None:
                        raise FrameError("hello_required", "send a hello frame first")
                    elif frame["type"] == "message":
                        await self._message(hub, ws, conversation, frame)
                    elif frame["type"] == "lang":
                        lang = parse(frame.get("lang"))
                        if lang is None:
                            raise FrameError("bad_lang", "lang must be zh or en")
                        await hub.conversations.set_language(conversation.id, lang)
                        conversation.language = lang
                    elif frame["type"] == "ping":
                        await ws.send_json({"type": "pong"})
                except (FrameError, InvalidInput) as exc:
                    # A rejected message's id lets the widget mark it failed; rate-limited
                    # ones carry none, so the widget keeps them and sends them again.
                    message_id = frame.get("id") if exc.code != "rate_limited" else None
                    lang = parse(conversation.language) if conversation else None
                    await self._error(ws, exc.code, self._explain(exc, lang), message_id)
                except ConnectionResetError:
                    break  # the citizen went away mid-frame; what was stored stays stored
        finally:
            if conversation is not None:
                sockets = self._sockets.get(conversation.id)
                if sockets is not None:
                    sockets.discard(ws)
                    if not sockets:
                        del self._sockets[conversation.id]
        if ws.close_code == 1009:
            log.warning("websocket closed: frame too large")
        return ws

    @staticmethod
    def _parse(data: str) -> dict[str, Any]:
        try:
            frame = json.loads(data)
        except ValueError as exc:
            raise FrameError("bad_json", "frame is not valid JSON") from exc
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError("bad_frame", "frame must be a JSON object with a string 'type'")
        if frame["type"] not in ("hello", "message", "lang", "ping"):
            raise FrameError("unknown_type", f"unknown frame type {frame['type'][:20]!r}")
        return frame

    async def _hello(
        self, hub: Hub, ws: web.WebSocketResponse, frame: dict[str, Any]
    ) -> Conversation:
        lang: Lang = parse(frame.get("lang")) or "zh"
        resume = frame.get("resume")
        conversation = None
        token = None
        if resume is not None:
            if not isinstance(resume, str) or not _TOKEN.match(resume):
                raise FrameError("bad_resume", "resume token is malformed")
            conversation = await hub.conversations.resume(resume)
            token = resume
        resumed = conversation is not None
        unit = frame.get("unit")
        if unit is not None and (not isinstance(unit, str) or not _UNIT.match(unit)):
            raise FrameError("bad_unit", "unit must be an org unit id")
        if conversation is None:
            conversation, token = await hub.conversations.open(self.name, lang, org_unit=unit)
        self._sockets[conversation.id].add(ws)
        await ws.send_json(
            {
                "type": "welcome",
                "conversation_id": conversation.id,
                "resume": token,
                "resumed": resumed,
                "state": conversation.state,
                "lang": conversation.language,
            }
        )
        if resumed:
            history = await hub.conversations.history(conversation.id, citizen_view=True)
            await ws.send_json({"type": "history", "messages": [_history_item(m) for m in history]})
            place = hub.handoff.position(conversation.id) if hub.handoff else None
            if place is not None:
                await ws.send_json({"type": "queue", "position": place[0], "eta_seconds": place[1]})
        else:
            hub.greet(conversation.id)
        return conversation

    async def _message(
        self,
        hub: Hub,
        ws: web.WebSocketResponse,
        conversation: Conversation,
        frame: dict[str, Any],
    ) -> None:
        client_id, text, payload = frame.get("id"), frame.get("text"), frame.get("payload")
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            raise FrameError("bad_id", "message id must be 8-64 letters, digits or dashes")
        if not isinstance(text, str):
            raise FrameError("bad_text", "message text must be a string")
        if payload is not None and not isinstance(payload, str):
            raise FrameError("bad_payload", "payload must be a string")
        inbound = Inbound(
            conversation_id=conversation.id,
            client_id=client_id,
            text=text,
            payload=payload,
        )
        accepted = await hub.accept(inbound)
        ack: dict[str, Any] = {"type": "ack", "id": client_id}
        if accepted.duplicate:
            ack["duplicate"] = True
        try:
            await ws.send_json(ack)
        finally:
            hub.dispatch(inbound, accepted)  # stored: it is answered even if the socket died

    def _explain(self, exc: Exception, lang: Lang | None) -> str:
        """What the citizen reads: their language for what they can fix, else the reason."""
        code = getattr(exc, "code", "")
        if lang is not None and f"error_{code}" in TEXTS:
            return say(f"error_{code}", lang, limit=self._settings.max_text_chars)
        return str(exc)

    @staticmethod
    async def _error(
        ws: web.WebSocketResponse, code: str, message: str, message_id: object = None
    ) -> None:
        if ws.closed:
            return
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(message_id, str) and _CLIENT_ID.match(message_id):
            frame["id"] = message_id
        await ws.send_json(frame)
