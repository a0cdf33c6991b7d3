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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from hotline.clientip import bucket, request_address
from hotline.config import Settings
from hotline.lang import Lang, parse
from hotline.messages import Inbound, Outbound
from hotline.origin import origin_allowed
from hotline.ports import Capabilities, Channel, HistoryItem, Inbox, InvalidInput, Opened
from hotline.ratelimit import KeyedRateLimit
from hotline.store.models import ConversationState
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


def _hide_values(exc: BaseException) -> None:
    """Keep SQL parameters (a citizen's text) out of a logged traceback.

    SQLAlchemy's errors print the statement's parameters unless ``hide_parameters``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if hasattr(current, "hide_parameters"):
            current.hide_parameters = True
        current = current.__cause__ or current.__context__


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConversationLimited(Exception):
    """The client's address opened its share of new conversations for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many new conversations; retry after {retry_after} s")
        self.retry_after = retry_after


def _history_item(message: HistoryItem) -> dict[str, Any]:
    item: dict[str, Any] = {"from": message.author, "text": message.text, "at": message.at}
    if message.buttons:
        item["buttons"] = list(message.buttons)
    if message.client_id:
        item["id"] = message.client_id
    return item


class WebChatChannel(Channel):
    name = "webchat"
    capabilities = Capabilities(media="chat", buttons=True)

    def __init__(self, settings: Settings, inbox: Inbox, *, hello_timeout: float = 30.0) -> None:
        self._settings = settings
        self._inbox = inbox
        self._hello_timeout = hello_timeout
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        # New conversations per client address (an upgrade counts as one: it is the
        # socket's first conversation, so sockets pile up no faster than conversations).
        per_address = settings.new_conversations_per_address
        self._new_conversations = (
            KeyedRateLimit(per_address, settings.new_conversations_window) if per_address else None
        )

    def how_to_try(self, origin: str) -> str | None:
        return f"open {origin}/ and chat (the widget: {origin}/widget.js)"

    def add_routes(self, app: web.Application) -> None:
        app.on_shutdown.append(self._close_sockets)
        app.router.add_get("/", self.index)
        app.router.add_get("/widget.js", self.widget)
        app.router.add_get("/ws/chat", self.websocket)
        app.router.add_get("/ws/chat/limit", self.limit)

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def widget(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "widget.js",
            headers={"Cache-Control": "no-cache", "Content-Type": "text/javascript; charset=utf-8"},
        )

    async def limit(self, request: web.Request) -> web.Response:
        """``{"retry_after": seconds}`` before this address may open a chat socket (0: now).

        A browser cannot read the 429 of a refused WebSocket upgrade (the page only sees
        the socket fail), so the widget asks here after a socket that never opened.
        Nothing is spent. Readable cross-origin from the allowed origins.
        """
        wait = 0
        if self._new_conversations is not None:
            address = bucket(request_address(request, self._settings.trusted_proxies))
            wait = self._new_conversations.peek(address)
        headers = {"Cache-Control": "no-store", "Vary": "Origin"}
        origin = request.headers.get("Origin")
        if origin is not None and origin_allowed(request, self._settings.allowed_origins):
            headers["Access-Control-Allow-Origin"] = origin
        return web.json_response({"retry_after": wait}, headers=headers)

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
        address = bucket(request_address(request, self._settings.trusted_proxies))
        credit = 0  # new conversations this socket may open before asking the limit again
        if self._new_conversations is not None and ws.can_prepare(request).ok:
            wait = self._new_conversations.take(address)
            if wait:
                raise self._too_many(wait)
            credit = 1

        def admit() -> int:
            """0 if this socket may open one more conversation, else seconds to wait."""
            nonlocal credit
            if self._new_conversations is None:
                return 0
            if credit:
                credit -= 1
                return 0
            return self._new_conversations.take(address)

        await ws.prepare(request)
        inbox = self._inbox
        limiter = RateLimiter(self._settings.ws_messages_per_minute)
        conversation: Opened | None = None
        try:
            while True:
                # A socket that never says hello holds memory for nothing: it gets a while.
                hello_wait = self._hello_timeout if conversation is None else None
                try:
                    msg = await ws.receive(timeout=hello_wait)
                except TimeoutError:
                    await self._error(ws, "hello_timeout", "no hello frame in time; reconnect")
                    await ws.close(code=1008, message=b"hello timeout")
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
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
                        # The socket leaves its conversation only once the new one stands:
                        # a refused hello keeps it where it was.
                        previous = conversation
                        try:
                            conversation = await self._hello(inbox, ws, frame, admit)
                        except ConversationLimited as limited:
                            await self._refuse_hello(ws, frame, limited.retry_after)
                            continue
                        if previous is not None and (
                            previous.conversation_id != conversation.conversation_id
                        ):
                            self._sockets[previous.conversation_id].discard(ws)
                    elif conversation is None:
                        raise FrameError("hello_required", "send a hello frame first")
                    elif frame["type"] == "message":
                        await self._message(inbox, ws, conversation, frame)
                    elif frame["type"] == "lang":
                        lang = parse(frame.get("lang"))
                        if lang is None:
                            raise FrameError("bad_lang", "lang must be zh or en")
                        await inbox.set_language(conversation.conversation_id, lang)
                        conversation = replace(conversation, lang=lang)
                    elif frame["type"] == "ping":
                        await ws.send_json({"type": "pong"})
                except (FrameError, InvalidInput) as exc:
                    # A rejected message's id lets the widget mark it failed; rate-limited
                    # ones carry none, so the widget keeps them and sends them again.
                    message_id = frame.get("id") if exc.code != "rate_limited" else None
                    lang = conversation.lang if conversation else None
                    await self._error(ws, exc.code, self._explain(exc, lang), message_id)
                except ConnectionResetError:
                    break  # the citizen went away mid-frame; what was stored stays stored
                except Exception as exc:
                    # A bug or a storage failure on one frame must not take the chat down.
                    # No id: the widget keeps the message and sends it again later (stored
                    # ones are deduplicated). The log names the frame, never its text.
                    _hide_values(exc)
                    log.exception(
                        "chat frame failed",
                        extra={
                            "frame_type": frame.get("type"),
                            "conversation_id": conversation.conversation_id
                            if conversation
                            else None,
                        },
                    )
                    lang = conversation.lang if conversation else "zh"
                    await self._error(ws, "internal", say("error_internal", lang))
        finally:
            if conversation is not None:
                sockets = self._sockets.get(conversation.conversation_id)
                if sockets is not None:
                    sockets.discard(ws)
                    if not sockets:
                        del self._sockets[conversation.conversation_id]
        if ws.close_code == 1009:
            log.warning("websocket closed: frame too large")
        return ws

    @staticmethod
    def _parse(data: str) -> dict[str, Any]:
        try:
            frame = json.loads(data)
        except (ValueError, RecursionError) as exc:
            # RecursionError: nesting deep enough to exhaust the parser fits in a frame.
            raise FrameError("bad_json", "frame is not valid JSON") from exc
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError("bad_frame", "frame must be a JSON object with a string 'type'")
        if frame["type"] not in ("hello", "message", "lang", "ping"):
            raise FrameError("unknown_type", f"unknown frame type {frame['type'][:20]!r}")
        return frame

    @staticmethod
    def _too_many(retry_after: int) -> web.HTTPException:
        """429 for an upgrade past the address's limit: before the socket opens."""
        log.warning("chat upgrade refused: address over its limit", extra={"retry": retry_after})
        body = {
            "error": "too_many_conversations",
            "message": say("error_too_many_conversations", "en", retry_after=retry_after),
            "message_zh": say("error_too_many_conversations", "zh", retry_after=retry_after),
            "retry_after": retry_after,
        }
        return web.HTTPTooManyRequests(
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
            headers={"Retry-After": str(retry_after)},
        )

    @staticmethod
    async def _refuse_hello(
        ws: web.WebSocketResponse, frame: dict[str, Any], retry_after: int
    ) -> None:
        """A hello that would open one conversation too many: the socket stays as it was."""
        log.warning("chat hello refused: address over its limit", extra={"retry": retry_after})
        lang: Lang = parse(frame.get("lang")) or "zh"
        if not ws.closed:
            await ws.send_json(
                {
                    "type": "error",
                    "code": "too_many_conversations",
                    "message": say("error_too_many_conversations", lang, retry_after=retry_after),
                    "retry_after": retry_after,
                }
            )

    async def _hello(
        self,
        inbox: Inbox,
        ws: web.WebSocketResponse,
        frame: dict[str, Any],
        admit: Callable[[], int] = lambda: 0,
    ) -> Opened:
        raw_lang = frame.get("lang")
        if raw_lang is not None and parse(raw_lang) is None:
            raise FrameError("bad_lang", "lang must be zh or en")
        lang: Lang = parse(raw_lang) or "zh"
        resume = frame.get("resume")
        conversation = None
        token = None
        if resume is not None:
            if not isinstance(resume, str) or not _TOKEN.match(resume):
                raise FrameError("bad_resume", "resume token is malformed")
            conversation = await inbox.resume(resume)
            token = resume
        resumed = conversation is not None
        unit = frame.get("unit")
        if unit is not None and (not isinstance(unit, str) or not _UNIT.match(unit)):
            raise FrameError("bad_unit", "unit must be an org unit id")
        if conversation is None:
            wait = admit()
            if wait:
                raise ConversationLimited(wait)
            conversation = await inbox.open(self.name, lang, org_unit=unit)
            token = conversation.resume_token
        self._sockets[conversation.conversation_id].add(ws)
        await ws.send_json(
            {
                "type": "welcome",
                "conversation_id": conversation.conversation_id,
                "resume": token,
                "resumed": resumed,
                "state": conversation.state.value,
                "lang": conversation.lang,
            }
        )
        if resumed:
            history = await inbox.history(conversation.conversation_id)
            await ws.send_json({"type": "history", "messages": [_history_item(m) for m in history]})
            place = inbox.position(conversation.conversation_id)
            if place is not None:
                await ws.send_json({"type": "queue", "position": place[0], "eta_seconds": place[1]})
        else:
            inbox.greet(conversation.conversation_id)
        return conversation

    async def _message(
        self,
        inbox: Inbox,
        ws: web.WebSocketResponse,
        conversation: Opened,
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
            conversation_id=conversation.conversation_id,
            client_id=client_id,
            text=text,
            payload=payload,
        )
        accepted = await inbox.accept(inbound)
        ack: dict[str, Any] = {"type": "ack", "id": client_id}
        if accepted.duplicate:
            ack["duplicate"] = True
        try:
            await ws.send_json(ack)
        finally:
            inbox.dispatch(inbound, accepted)  # stored: it is answered even if the socket died

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
