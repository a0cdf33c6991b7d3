"""The Telegram channel: updates in (webhook or long polling), replies out by the Bot API.

Every update is checked (``protocol.check_update``) and parsed by aiogram, then routed
by an aiogram ``Router`` to the handlers below. A message is stored through the
``Inbox`` before anything else happens to it (persist first); its client id is the
Telegram message id (a callback query's id for a button press), so a redelivered update
is stored once. The conversation is keyed on the private chat's id (``Inbox.current``);
a new one starts in the language of the user's Telegram client (``language_code``),
after which the hub follows what they write. Logs carry update ids and codes, never
text, names, usernames or phone numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

from aiogram import Dispatcher, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandStart
from aiogram.types import CallbackQuery, Message, Update
from aiohttp import web
from pydantic import ValidationError

from channel_connectors.telegram.protocol import (
    MAX_BODY,
    BadUpdate,
    button_key,
    check_update,
    is_button_key,
    language,
    split_text,
)
from channel_connectors.telegram.settings import WEBHOOK_PATH, TelegramSettings
from channel_connectors.telegram.transport import ApiError, BotApi
from hotline.config import Settings
from hotline.lang import Lang
from hotline.messages import Inbound, Outbound
from hotline.ports import Capabilities, Channel, ChannelRuntime, Health, Inbox, InvalidInput
from hotline.ratelimit import KeyedRateLimit
from hotline.texts import TEXTS, say

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
NAME = "telegram"


def make_router(channel: TelegramChannel) -> Router:
    """The aiogram handlers: each returns what the webhook answers (or polling logs)."""
    router = Router(name=NAME)

    @router.message(CommandStart())
    async def start(message: Message) -> dict[str, Any]:
        return await channel.on_start(message)

    @router.message(F.text)
    async def text(message: Message) -> dict[str, Any]:
        return await channel.on_text(message)

    @router.message()
    async def other(message: Message) -> dict[str, Any]:
        return await channel.on_other(message)

    @router.callback_query()
    async def pressed(query: CallbackQuery) -> dict[str, Any]:
        return await channel.on_button(query)

    return router


class TelegramChannel(Channel):
    name = NAME
    capabilities = Capabilities(media="chat", buttons=True, max_length=4096, address="telegram")

    def __init__(self, settings: TelegramSettings, core: Settings, inbox: Inbox) -> None:
        self.settings = settings
        self._core = core
        self._inbox = inbox
        self._api: BotApi | None = None
        self._dispatcher = Dispatcher()
        self._dispatcher.include_router(make_router(self))
        self._poller: asyncio.Task[None] | None = None
        self._poll_error: str | None = None
        self._rate = KeyedRateLimit(settings.rate_limit, settings.rate_window)
        self._rate_notices = KeyedRateLimit(1, settings.rate_window)
        self._secret = settings.webhook_secret.encode("ascii")

    # --------------------------------------------------------------- wiring
    def add_routes(self, app: web.Application) -> None:
        if self.settings.enabled and self.settings.mode == "webhook":
            app.router.add_post(WEBHOOK_PATH, self.webhook)

    async def start(self, runtime: ChannelRuntime) -> None:
        s = self.settings
        if not s.enabled:
            return
        api = self._api = BotApi(s, runtime.http)  # set first: updates may come at once
        try:
            if s.mode == "webhook":
                await api.set_webhook(s.webhook_url, s.webhook_secret)
            else:
                await api.delete_webhook()
        except Exception:
            self._api = None
            await api.close()
            raise
        if s.mode == "polling":
            self._poller = asyncio.create_task(self._poll())
        log.info("telegram channel running", extra={"mode": s.mode, "local_api": s.local_api})

    async def stop(self) -> None:
        if self._poller is not None:
            poller, self._poller = self._poller, None
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self._api is not None:
            api, self._api = self._api, None
            await api.close()

    async def health(self) -> Health:
        s = self.settings
        if not s.enabled:
            return Health("off", s.off_reason)
        if self._api is None:
            return Health("down", "not running")
        if self._poll_error is not None:
            return Health("down", self._poll_error)
        try:
            username = await self._api.me()
        except (TelegramAPIError, ApiError, OSError) as exc:
            return Health("down", f"getMe failed: {type(exc).__name__}")
        return Health("ok", f"@{username} by {s.mode} at {s.api_url}")

    def how_to_try(self, origin: str) -> str | None:
        s = self.settings
        if not s.enabled:
            return f"off ({s.off_reason})"
        if s.local_api:
            return (
                f"write to the bot on the local Bot API at {s.api_url}: "
                '.venv/bin/hotline simulate telegram --user 1001 --text "你好"'
            )
        return "write to the bot in Telegram (its @username is in /healthz)"

    @property
    def api(self) -> BotApi:
        if self._api is None:
            raise ApiError("the Telegram channel is not running")
        return self._api

    # ------------------------------------------------------------- outbound
    async def deliver(self, message: Outbound) -> None:
        chat_id = await self._chat_of(message.conversation_id)
        if chat_id is None:
            return
        buttons = [(b.title, button_key(b.title, b.payload)) for b in message.buttons]
        pieces = split_text(message.text or "…")
        try:
            for i, piece in enumerate(pieces):
                await self.api.send(chat_id, piece, buttons if i == len(pieces) - 1 else ())
        except (TelegramAPIError, ApiError, OSError) as exc:
            # Stored already: the transcript keeps it; the citizen may have blocked the bot.
            log.warning(
                "telegram delivery failed",
                extra={"conversation_id": message.conversation_id, "error": type(exc).__name__},
            )

    async def busy(self, conversation_id: str, busy: bool) -> None:
        if not busy:
            return
        chat_id = await self._chat_of(conversation_id)
        if chat_id is not None:
            with contextlib.suppress(TelegramAPIError, ApiError, OSError):
                await self.api.typing(chat_id)

    async def _chat_of(self, conversation_id: str) -> int | None:
        address = await self._inbox.address(conversation_id)
        if address is None or not address.lstrip("-").isdigit():
            log.warning("no telegram chat", extra={"conversation_id": conversation_id})
            return None
        return int(address)

    async def _notice(self, chat_id: int, text: str) -> None:
        """A line of the channel's own (not stored: it answers nothing the hub holds)."""
        with contextlib.suppress(TelegramAPIError, ApiError, OSError):
            await self.api.send(chat_id, text)

    # -------------------------------------------------------------- inbound
    async def webhook(self, request: web.Request) -> web.Response:
        """``POST /channels/telegram/webhook`` from the Bot API server."""
        sent = request.headers.get(SECRET_HEADER)
        if sent is None:
            return _error(401, "unauthorized", f"the {SECRET_HEADER} header is missing")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), self._secret):
            log.warning("telegram webhook with a wrong secret")
            return _error(403, "forbidden", f"wrong {SECRET_HEADER}")
        if self._api is None:
            return _error(503, "starting", "the Telegram channel is not running yet")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, "too_large", f"an update may not exceed {MAX_BODY} bytes")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _error(413, "too_large", f"an update may not exceed {MAX_BODY} bytes")
        try:
            raw = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            log.info("telegram update refused", extra={"code": "bad_json"})
            return _error(400, "bad_json", "the body is not a JSON document")
        try:
            result = await self.handle(raw)
        except BadUpdate as exc:
            log.info("telegram update refused", extra={"code": exc.code})
            return _error(400, exc.code, str(exc))
        except Exception as exc:  # ours: Telegram delivers it again later, nothing is lost
            log.error("telegram update failed", extra=_error_of(exc))
            return _error(500, "internal", "the update could not be handled now")
        return web.json_response({"ok": True, **result})

    async def _poll(self) -> None:
        """Long polling: the offset moves past an update once it was handled or refused
        for good; a failure of our own (the database) stops the batch to retry it."""
        offset, delay = 0, 1.0
        while True:
            try:
                updates = await self.api.get_updates(offset, self.settings.poll_timeout)
            except ApiError as exc:
                self._poll_error = str(exc)
                log.warning("telegram poll failed", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._poll_error, delay = None, 1.0
            for raw in updates:
                update_id = raw.get("update_id") if isinstance(raw, dict) else None
                try:
                    await self.handle(raw)
                except BadUpdate as exc:
                    log.info("telegram update refused", extra={"code": exc.code})
                    if exc.chat_id is not None:
                        notice = _bilingual("telegram_not_accepted", exc.code)
                        await self._notice(exc.chat_id, notice)
                except Exception as exc:  # ours (the database): not the update's fault
                    # Only the type: a driver's message may quote the row (text, names).
                    log.error("telegram update failed; fetched again", extra=_error_of(exc))
                    await asyncio.sleep(delay)
                    break
                if isinstance(update_id, int) and not isinstance(update_id, bool):
                    offset = max(offset, update_id + 1)

    async def handle(self, raw: Any) -> dict[str, Any]:
        """Check one update, parse it and hand it to the router; what it did."""
        checked = check_update(raw, self._core.max_text_chars)
        if checked.kind == "ignored" or not checked.private:
            return {"status": "ignored"}
        try:
            update = Update.model_validate(raw, context={"bot": self.api.bot})
        except ValidationError as exc:  # its text would quote the input: not logged
            raise BadUpdate(
                "bad_update",
                f"the update does not match the Bot API ({exc.error_count()} errors)",
                chat_id=checked.chat_id,
            ) from None
        result = await self._dispatcher.feed_update(self.api.bot, update)
        return result if isinstance(result, dict) else {"status": "ignored"}

    async def _open(self, chat_id: int, language_code: str | None) -> str:
        lang = language(language_code)
        opened = await self._inbox.current(NAME, str(chat_id), lang)
        return opened.conversation_id

    async def on_start(self, message: Message) -> dict[str, Any]:
        """``/start``: the bot greets (the command is kept in the transcript)."""
        chat_id = message.chat.id
        if await self._inbox.blocked(NAME, str(chat_id)):
            return {"status": "refused"}
        code = message.from_user.language_code if message.from_user else None
        cid = await self._open(chat_id, code)
        accepted = await self._inbox.record(Inbound(cid, f"m-{message.message_id}", "/start"))
        if not accepted.duplicate:
            self._inbox.greet(cid)
        return {"status": "greeted", "duplicate": accepted.duplicate}

    async def on_text(self, message: Message) -> dict[str, Any]:
        chat_id, text = message.chat.id, message.text or ""
        if await self._inbox.blocked(NAME, str(chat_id)):
            log.info("telegram message from a blacklisted chat refused")
            return {"status": "refused"}
        code = message.from_user.language_code if message.from_user else None
        cid = await self._open(chat_id, code)
        inbound = Inbound(cid, f"m-{message.message_id}", text)
        return await self._take(chat_id, inbound, language(code))

    async def on_other(self, message: Message) -> dict[str, Any]:
        """A photo, sticker, voice note ...: only text is taken; the sender is told."""
        code = message.from_user.language_code if message.from_user else None
        await self._notice(message.chat.id, say("telegram_text_only", language(code)))
        return {"status": "not_text"}

    async def on_button(self, query: CallbackQuery) -> dict[str, Any]:
        """A press of an inline button: found among the buttons the hub offered in the
        chat's conversation by its digest, never by trusting what came back."""
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        lang = language(query.from_user.language_code)
        data = query.data or ""
        if await self._inbox.blocked(NAME, str(chat_id)):
            return {"status": "refused"}
        cid = await self._open(chat_id, query.from_user.language_code)
        found = await self._offered(cid, data) if is_button_key(data) else None
        if found is None:
            log.info("telegram button not offered", extra={"conversation_id": cid})
            with contextlib.suppress(TelegramAPIError, ApiError, OSError):
                await self.api.answer(query.id, say("telegram_stale_button", lang))
            return {"status": "stale_button"}
        title, payload = found
        result = await self._take(chat_id, Inbound(cid, f"cb-{query.id}", title, payload), lang)
        with contextlib.suppress(TelegramAPIError, ApiError, OSError):
            await self.api.answer(query.id)  # after it is stored: the spinner stops
        if query.message is not None and not result.get("duplicate"):
            # A choice is made once: the keyboard goes, so an old menu is not pressed again.
            with contextlib.suppress(TelegramAPIError, ApiError, OSError):
                await self.api.clear_buttons(chat_id, query.message.message_id)
        return result

    async def _offered(self, conversation_id: str, data: str) -> tuple[str, str] | None:
        for item in reversed(await self._inbox.history(conversation_id)):
            for button in item.buttons:
                title, payload = button.get("title", ""), button.get("payload", "")
                if button_key(title, payload) == data:
                    return title, payload
        return None

    async def _take(self, chat_id: int, inbound: Inbound, lang: Lang) -> dict[str, Any]:
        """Persist first, then answer in the background (or only keep it, past the rate)."""
        address = str(chat_id)
        if self._rate.take(address):
            accepted = await self._inbox.record(inbound)
            if not accepted.duplicate and not self._rate_notices.take(address):
                await self._notice(chat_id, say("telegram_rate_limited", lang))
            return {"status": "rate_limited", "duplicate": accepted.duplicate}
        try:
            accepted = await self._inbox.accept(inbound)
        except InvalidInput as exc:
            if inbound.payload is None or exc.code != "bad_payload":
                raise BadUpdate(exc.code, str(exc), chat_id=chat_id) from exc
            inbound = Inbound(inbound.conversation_id, inbound.client_id, inbound.text)
            accepted = await self._inbox.accept(inbound)  # a link-like button: its title
        self._inbox.dispatch(inbound, accepted)
        return {
            "status": "accepted",
            "duplicate": accepted.duplicate,
            "message_id": accepted.message_id,
        }


def _bilingual(key: str, code: str) -> str:
    """For a sender whose conversation (and language) could not be read."""
    return "\n".join(say(key, lang, reason=_reason(code, lang)) for lang in ("zh", "en"))


def _reason(code: str, lang: Lang) -> str:
    key = f"telegram_reason_{code}"
    return say(key if key in TEXTS else "telegram_reason_bad_update", lang)


def _error_of(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": code, "error_code": status, "description": message}, status=status
    )


def make_channel(settings: TelegramSettings, core: Settings, inbox: Inbox) -> TelegramChannel:
    return TelegramChannel(settings, core, inbox)
