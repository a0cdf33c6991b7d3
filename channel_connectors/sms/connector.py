"""The SMS channel: Kannel's inbound webhook, delivery via ``sendsms``, delivery reports.

Inbound (smsbox ``post-url`` → ``POST /channels/sms/inbound``): loopback peers only by
default, HTTP basic auth with the shared secret (constant-time compare), every field
validated, then persist first (``Inbox.accept``) and answer in the background. The
conversation is keyed on the phone number (``Inbox.current``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_connectors.sms import store
from channel_connectors.sms.conf import DLR_PATH, INBOUND_PATH, with_secret
from channel_connectors.sms.embedded import KannelProcesses
from channel_connectors.sms.kannel import (
    DLR_STATES,
    FINAL_STATES,
    KannelClient,
    SendError,
    segments,
    split,
)
from channel_connectors.sms.settings import SmsSettings
from hotline.api.common import visible
from hotline.api.errors import Fields, read_json
from hotline.auth import require_user
from hotline.config import Settings
from hotline.lang import Lang, detect
from hotline.messages import Inbound, Outbound
from hotline.ports import (
    Capabilities,
    Channel,
    ChannelRuntime,
    Health,
    Inbox,
    InvalidInput,
)
from hotline.ratelimit import KeyedRateLimit
from hotline.store.models import Blacklist, Contact, Role
from hotline.texts import say

log = logging.getLogger(__name__)

STAFF = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
MAX_BODY = 8192  # bytes of one inbound SMS (Kannel joins concatenated parts first)
OPT_OUT = frozenset({"td", "stop", "退订"})
OPT_IN = frozenset({"start", "开通"})
_NUMBER = re.compile(r"^\+?\d{3,20}$")
_MAINLAND = re.compile(r"^(?:0086|86)(1\d{10})$")
_KANNEL_ID = re.compile(r"^[A-Za-z0-9-]{1,60}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGIT = re.compile(r"^\s*(\d{1,2})\s*[.。]?\s*$")


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def normalize_number(raw: str) -> str:
    """The citizen's number as the conversation is keyed: mainland mobiles without +86."""
    value = re.sub(r"[\s()-]", "", raw)
    if not _NUMBER.match(value):
        raise BadRequest(400, "bad_sender", "sender must be a phone number of 3-20 digits")
    digits = value.lstrip("+")
    mainland = _MAINLAND.match(digits)
    if mainland:
        return mainland.group(1)
    return value


def decode_text(body: bytes, coding: str, charset: str) -> str:
    """The SMS text from Kannel's body: UCS-2 (coding 2) or the stated charset."""
    charset = charset.strip().strip('"').upper()
    if coding == "1":
        raise BadRequest(415, "binary_sms", "binary (8-bit) SMS are not supported")
    if coding not in ("", "0", "2"):
        raise BadRequest(400, "bad_coding", "coding must be 0, 1 or 2")
    if coding == "2" or charset in ("UTF-16BE", "UCS-2", "UCS-2BE", "UTF-16"):
        if len(body) % 2:
            raise BadRequest(400, "bad_coding", "UCS-2 text has an odd number of bytes")
        codec = "utf-16-be"
    elif charset in ("", "UTF-8"):
        codec = "utf-8"
    elif charset in ("ISO-8859-1", "LATIN1", "WINDOWS-1252"):
        codec = "cp1252" if charset == "WINDOWS-1252" else "latin-1"
    else:
        raise BadRequest(415, "bad_charset", "charset must be UTF-8, UTF-16BE or ISO-8859-1")
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise BadRequest(400, "bad_encoding", f"text is not valid {codec}") from exc


def _keyword(text: str) -> str:
    return text.strip().strip("\u3000").lower()


@dataclass
class SmsChannel(Channel):
    name = "sms"
    capabilities = Capabilities(
        media="deferred",
        buttons=False,
        attachments=False,
        max_length=670,
        segmented=True,
        delivery_reports=True,
        address="phone",
    )
    notice_address = "phone"  # hotline.ports.Notifier: case notices to reporters' phones

    def __init__(self, settings: SmsSettings, core: Settings, inbox: Inbox) -> None:
        self.settings = settings
        self._core = core
        self._inbox = inbox
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._kannel: KannelClient | None = None
        self._procs: KannelProcesses | None = None
        self._optout: set[str] = set()
        self._rate = KeyedRateLimit(settings.rate_limit, settings.rate_window)
        self._rate_notices = KeyedRateLimit(1, settings.rate_window)  # one per window
        self._buttons: dict[str, list[dict[str, str]]] = {}
        self._fresh_turn: set[str] = set()
        self._reports = asyncio.Condition()
        self.group_sends: Any = None  # campaigns.Campaigns, started and stopped with us
        user_pass = f"kannel:{settings.inbound_secret}".encode()
        self._auth = b"Basic " + base64.b64encode(user_pass)

    # --------------------------------------------------------------- wiring
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(INBOUND_PATH, self.inbound)
        app.router.add_route("GET", DLR_PATH, self.dlr)
        app.router.add_route("POST", DLR_PATH, self.dlr)
        app.router.add_get("/api/channels/sms/segments", self.segments_api)
        app.router.add_post("/api/channels/sms/segments", self.segments_api)  # long drafts
        app.router.add_get(
            "/api/channels/sms/conversations/{conversation_id}/deliveries", self.deliveries_api
        )

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise web.HTTPServiceUnavailable(text="the SMS channel is starting")
        return self._sessions

    async def start(self, runtime: ChannelRuntime) -> None:
        s = self.settings
        self._sessions = runtime.sessions
        self._kannel = KannelClient(
            runtime.http,
            s.sendsms_url,
            s.sendsms_user,
            s.sendsms_password,
            sender=s.sender,
            max_segments=s.max_segments,
        )
        async with self.sessions() as session:
            rows = await session.execute(select(store.sms_optout.c.number))
            self._optout = {r[0] for r in rows}
        if s.kannel == "embedded":
            self._procs = KannelProcesses(s, self._core.var_dir / "log")
            try:
                await self._procs.start()
            except Exception:
                self._procs.stop()
                raise
            log.info("embedded kannel running", extra={"fake_link": s.fake_link})
        if self.group_sends is not None:
            await self.group_sends.start(runtime)

    async def stop(self) -> None:
        self._kannel = None  # its HTTP session closes with the core
        if self.group_sends is not None:
            await self.group_sends.stop()
        if self._procs is not None:
            procs, self._procs = self._procs, None
            procs.stop()

    async def health(self) -> Health:
        s = self.settings
        if s.kannel == "off":
            return Health("off", s.off_reason)
        if self._kannel is None:
            return Health("down", "not running")
        if self._procs is not None:
            ok, detail = self._procs.running()
            if not ok:
                return Health("down", detail)
        ok, detail = await self._kannel.probe()
        return Health("ok" if ok else "down", detail)

    def how_to_try(self, origin: str) -> str | None:
        if self.settings.kannel == "off":
            return f"sms: off ({self.settings.off_reason})"
        if self.settings.fake_link:
            return (
                "sms: text the hotline as a citizen through Kannel's fake SMSC: "
                '.venv/bin/hotline simulate sms --from 13800138000 --text "我要举报"'
            )
        return f"sms: text {self.settings.sender} (Kannel at {self.settings.sendsms_url})"

    # ------------------------------------------------------------- outbound
    async def busy(self, conversation_id: str, busy: bool) -> None:
        if busy:
            self._fresh_turn.add(conversation_id)

    async def deliver(self, message: Outbound) -> None:
        conversation_id = message.conversation_id
        buttons = [{"title": b.title, "payload": b.payload} for b in message.buttons]
        fresh = conversation_id in self._fresh_turn
        self._fresh_turn.discard(conversation_id)
        if buttons or fresh or message.author.value == "agent":
            await self._remember_buttons(conversation_id, buttons)
        number = await self._inbox.address(conversation_id)
        if number is None:
            log.warning(
                "no number for an SMS conversation", extra={"conversation_id": conversation_id}
            )
            return
        text = self.as_text(message)
        for piece in split(text, self.settings.max_chars):
            await self._send(
                number, piece, conversation_id, "reply", message.author.value, message.message_id
            )

    async def _send(
        self,
        number: str,
        text: str,
        conversation_id: str | None,
        kind: str,
        author: str | None,
        message_id: int | None = None,
    ) -> int:
        info = segments(text)
        # Opt-out confirmations ("notice") still go out; replies and case notices do not.
        suppressed = kind in ("reply", "case_notice") and number in self._optout
        async with self.sessions() as session:
            result = await session.execute(
                insert(store.sms_outbound)
                .values(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    number=number,
                    kind=kind,
                    author=author,
                    chars=len(text),
                    segments=info.segments,
                    encoding=info.encoding,
                    status="suppressed" if suppressed else "sending",
                    created_at=dt.datetime.now(dt.UTC),
                )
                .returning(store.sms_outbound.c.id)
            )
            row_id = int(result.scalar_one())
            await session.commit()
        if suppressed:
            log.info("sms suppressed: number opted out", extra={"sms_id": row_id})
            return row_id
        assert self._kannel is not None
        dlr_url = with_secret(
            f"{self.settings.public_url}{DLR_PATH}?sid={row_id}&s=%d&t=%T",
            self.settings.inbound_secret,
        )
        status, error = "sent", None
        for attempt in range(2):
            try:
                await self._kannel.send(number, text, dlr_url)
                status, error = "sent", None
                break
            except SendError as exc:
                status, error = "failed", str(exc)[:200]
                log.warning("sms send failed", extra={"sms_id": row_id, "attempt": attempt + 1})
        async with self.sessions() as session:
            await session.execute(
                update(store.sms_outbound)
                .where(store.sms_outbound.c.id == row_id, store.sms_outbound.c.status == "sending")
                .values(status=status, error=error)
            )
            await session.commit()
        return row_id

    async def send_notice(self, address: str, text: str) -> bool:
        """One SMS outside any conversation (a case notice); never to an opted-out number."""
        row_id = await self._send(address, text, None, "case_notice", "system")
        async with self.sessions() as session:
            status = (
                await session.execute(
                    select(store.sms_outbound.c.status).where(store.sms_outbound.c.id == row_id)
                )
            ).scalar_one()
        return bool(status == "sent")

    async def _remember_buttons(self, conversation_id: str, buttons: list[dict[str, str]]) -> None:
        if self._buttons.get(conversation_id, []) == buttons and conversation_id in self._buttons:
            return
        self._buttons[conversation_id] = buttons
        async with self.sessions() as session:
            await session.execute(
                delete(store.sms_buttons).where(
                    store.sms_buttons.c.conversation_id == conversation_id
                )
            )
            if buttons:
                await session.execute(
                    insert(store.sms_buttons).values(
                        conversation_id=conversation_id,
                        buttons=buttons,
                        updated_at=dt.datetime.now(dt.UTC),
                    )
                )
            await session.commit()

    async def _last_buttons(self, conversation_id: str) -> list[dict[str, str]]:
        if conversation_id in self._buttons:
            return self._buttons[conversation_id]
        async with self.sessions() as session:
            raw = (
                await session.execute(
                    select(store.sms_buttons.c.buttons).where(
                        store.sms_buttons.c.conversation_id == conversation_id
                    )
                )
            ).scalar_one_or_none()
        buttons = [
            {"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for b in (raw or [])
            if isinstance(b, dict)
        ]
        self._buttons[conversation_id] = buttons
        return buttons

    # -------------------------------------------------------------- inbound
    def _peer_allowed(self, request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(peer in net for net in self.settings.inbound_allow)

    def _authorized(self, request: web.Request) -> bool:
        sent = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
        return hmac.compare_digest(sent, self._auth)

    async def inbound(self, request: web.Request) -> web.Response:
        if not self._peer_allowed(request):
            log.warning("sms inbound from a peer not allowed")
            return _error(403, "forbidden_peer", "this address may not post SMS")
        if not self._authorized(request):
            return _error(401, "unauthorized", "missing or wrong credentials")
        try:
            return await self._inbound(request)
        except BadRequest as exc:
            log.info("sms inbound refused", extra={"code": exc.code})
            return _error(exc.status, exc.code, str(exc))

    async def _inbound(self, request: web.Request) -> web.Response:
        query = request.query
        number = normalize_number(query.get("from", ""))
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise BadRequest(413, "too_large", f"an SMS body may not exceed {MAX_BODY} bytes")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BadRequest(413, "too_large", f"an SMS body may not exceed {MAX_BODY} bytes")
        charset = query.get("charset") or (request.charset or "")
        text = decode_text(body, query.get("coding", ""), charset)
        if _CONTROL.search(text):
            raise BadRequest(400, "bad_text", "text contains control characters")
        if not text.strip():
            raise BadRequest(400, "empty_text", "the SMS has no text")
        if len(text) > self._core.max_text_chars:
            raise BadRequest(
                413, "text_too_long", f"text is longer than {self._core.max_text_chars} characters"
            )
        sent_at = query.get("time", "")
        if sent_at and not sent_at.isdigit():
            raise BadRequest(400, "bad_time", "time must be a unix timestamp")
        kannel_id = query.get("fid") or query.get("id") or ""
        if kannel_id and not _KANNEL_ID.match(kannel_id):
            raise BadRequest(400, "bad_id", "message id must be letters, digits or dashes")
        if kannel_id:
            client_id = f"k-{kannel_id}"[:64]
        else:
            digest = hashlib.sha256(f"{number}\0{sent_at}\0{text}".encode()).hexdigest()
            client_id = f"h-{digest[:40]}"

        if await self._blacklisted(number):
            log.info("sms from a blacklisted number refused")
            return web.json_response({"status": "refused"})

        keyword = _keyword(text)
        first_lang: Lang = "zh" if keyword == "td" else detect(text, "zh")
        conversation = await self._inbox.current("sms", number, first_lang)
        cid = conversation.conversation_id
        lang = detect(text, conversation.lang)
        if keyword == "td":
            lang = conversation.lang  # TD is the mainland carriers' convention, not English
        if keyword in OPT_OUT:
            accepted = await self._inbox.record(Inbound(cid, client_id, text))
            if not accepted.duplicate and number not in self._optout:
                await self._set_optout(number, keyword)
                await self._send(number, say("sms_opted_out", lang), cid, "notice", "system")
            return web.json_response({"status": "opted_out", "duplicate": accepted.duplicate})
        if number in self._optout:
            await self._clear_optout(number)  # any new message is consent to answer it
            if keyword in OPT_IN:
                accepted = await self._inbox.record(Inbound(cid, client_id, text))
                await self._send(number, say("sms_opted_in", lang), cid, "notice", "system")
                return web.json_response({"status": "opted_in"})
        elif keyword in OPT_IN:
            accepted = await self._inbox.record(Inbound(cid, client_id, text))
            return web.json_response({"status": "opted_in", "duplicate": accepted.duplicate})

        if self._rate.take(number):
            accepted = await self._inbox.record(Inbound(cid, client_id, text))
            if not accepted.duplicate and not self._rate_notices.take(number):
                await self._send(number, say("sms_rate_limited", lang), cid, "notice", "system")
            return web.json_response({"status": "rate_limited", "duplicate": accepted.duplicate})

        payload = None
        digit = _DIGIT.match(text)
        if digit:
            buttons = await self._last_buttons(cid)
            n = int(digit.group(1))
            if 1 <= n <= len(buttons):
                payload = buttons[n - 1]["payload"]
        inbound = Inbound(cid, client_id, text, payload=payload)
        try:
            accepted = await self._inbox.accept(inbound)
        except InvalidInput as exc:
            if payload is None or exc.code != "bad_payload":
                raise BadRequest(400, exc.code, str(exc)) from exc
            inbound = Inbound(cid, client_id, text)  # a link-like button: send the digit
            accepted = await self._inbox.accept(inbound)
        self._inbox.dispatch(inbound, accepted)
        return web.json_response(
            {
                "status": "accepted",
                "duplicate": accepted.duplicate,
                "message_id": accepted.message_id,
            }
        )

    async def _blacklisted(self, number: str) -> bool:
        async with self.sessions() as session:
            found = await session.execute(
                select(Blacklist.contact_id)
                .join(Contact, Contact.id == Blacklist.contact_id)
                .where(Contact.channel == "sms", Contact.external_id == number)
                .limit(1)
            )
            return found.first() is not None

    async def _set_optout(self, number: str, keyword: str) -> None:
        async with self.sessions() as session:
            await session.execute(
                delete(store.sms_optout).where(store.sms_optout.c.number == number)
            )
            await session.execute(
                insert(store.sms_optout).values(
                    number=number, keyword=keyword[:16], opted_out_at=dt.datetime.now(dt.UTC)
                )
            )
            await session.commit()
        self._optout.add(number)
        log.info("sms opt-out recorded")

    async def _clear_optout(self, number: str) -> None:
        async with self.sessions() as session:
            await session.execute(
                delete(store.sms_optout).where(store.sms_optout.c.number == number)
            )
            await session.commit()
        self._optout.discard(number)
        log.info("sms opt-out lifted")

    # ---------------------------------------------------- delivery reports
    async def dlr(self, request: web.Request) -> web.Response:
        if not self._peer_allowed(request):
            return _error(403, "forbidden_peer", "this address may not post delivery reports")
        if not self._authorized(request):
            return _error(401, "unauthorized", "missing or wrong credentials")
        sid, code = request.query.get("sid", ""), request.query.get("s", "")
        if not sid.isdigit() or not code.isdigit() or int(code) not in DLR_STATES:
            return _error(400, "bad_report", "sid and s (a Kannel DLR code) are required")
        state = DLR_STATES[int(code)]
        table = store.sms_outbound
        async with self.sessions() as session:
            # A final state is never overwritten by an intermediate one arriving late.
            result = await session.execute(
                update(table)
                .where(
                    table.c.id == int(sid),
                    (table.c.dlr_state.is_(None)) | (table.c.dlr_state.not_in(FINAL_STATES)),
                )
                .values(dlr_state=state, dlr_code=int(code), dlr_at=dt.datetime.now(dt.UTC))
            )
            await session.commit()
        async with self._reports:
            self._reports.notify_all()
        return web.json_response({"status": "ok", "updated": bool(result.rowcount)})  # type: ignore[attr-defined]

    async def wait_report(self, sms_id: int, state: str, timeout: float = 15) -> None:
        """Wait until the send ``sms_id`` has the delivery state ``state`` (tests, bench)."""
        table = store.sms_outbound
        async with asyncio.timeout(timeout), self._reports:
            while True:
                async with self.sessions() as session:
                    found = (
                        await session.execute(select(table.c.dlr_state).where(table.c.id == sms_id))
                    ).scalar_one_or_none()
                if found == state:
                    return
                await self._reports.wait()

    # ------------------------------------------------------------ staff API
    async def segments_api(self, request: web.Request) -> web.Response:
        """How many SMS a draft takes: ``GET ?text=`` or, for a draft too long for a
        URL, ``POST {"text": ...}``."""
        require_user(request, *STAFF)
        limit = self._core.max_text_chars
        if request.method == "POST":
            body = Fields(await read_json(request), {"text"})
            text: str | None = body.text("text", max_len=limit, multiline=True)
        else:
            text = request.query.get("text")
        if text is None or len(text) > limit:
            return _error(400, "bad_request", f"text is required, at most {limit} chars")
        pieces = split(text, self.settings.max_chars) if text else [""]
        infos = [segments(p) for p in pieces]
        return web.json_response(
            {
                "chars": len(text),
                **segments(text).as_dict(),
                "messages": len(pieces),
                "segments": sum(i.segments for i in infos),
                "max_chars": self.settings.max_chars,
            }
        )

    async def deliveries_api(self, request: web.Request) -> web.Response:
        user = require_user(request, *STAFF)
        conversation_id = (await visible(request, user, "conversation_id")).id
        table = store.sms_outbound
        async with self.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(table)
                        .where(table.c.conversation_id == conversation_id)
                        .order_by(table.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return web.json_response(
            {
                "conversation_id": conversation_id,
                "deliveries": [
                    {
                        "id": r["id"],
                        "message_id": r["message_id"],
                        "kind": r["kind"],
                        "author": r["author"],
                        "chars": r["chars"],
                        "segments": r["segments"],
                        "encoding": r["encoding"],
                        "status": r["status"],
                        "dlr_state": r["dlr_state"],
                        "dlr_at": r["dlr_at"].isoformat() if r["dlr_at"] else None,
                        "created_at": r["created_at"].isoformat(),
                    }
                    for r in rows
                ],
            }
        )


class ChatSmsChannel(SmsChannel):
    """SMS threads handled as live chats (``HOTLINE_SMS_MEDIA=chat``)."""

    capabilities = replace(SmsChannel.capabilities, media="chat")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def make_channel(settings: SmsSettings, core: Settings, inbox: Inbox) -> SmsChannel:
    cls = ChatSmsChannel if settings.media == "chat" else SmsChannel
    return cls(settings, core, inbox)
