"""The Bot API as the channel uses it: a small interface over aiogram's ``Bot``.

Outbound calls (``sendMessage`` with an inline keyboard, ``answerCallbackQuery``,
``sendChatAction``, ``setWebhook``/``deleteWebhook``, ``getMe``) go through aiogram
against the configured API server. ``getUpdates`` is read raw: aiogram would parse the
whole batch into models at once, so one malformed update would fail every poll with the
same offset for ever; here each update is checked on its own and a bad one is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ChatAction
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from channel_connectors.telegram.settings import TelegramSettings

ALLOWED_UPDATES = ("message", "callback_query")


class ApiError(Exception):
    """The Bot API server refused a call or could not be reached."""


class BotApi:
    """One bot on one Bot API server."""

    def __init__(self, settings: TelegramSettings, http: aiohttp.ClientSession) -> None:
        self._server = TelegramAPIServer.from_base(settings.api_url)
        self.bot = Bot(settings.token, session=AiohttpSession(api=self._server))
        self._token = settings.token
        self._http = http  # the core's client session, for getUpdates

    async def close(self) -> None:
        await self.bot.session.close()

    async def me(self) -> str:
        """The bot's username (``getMe``): proves the token and the server."""
        user = await self.bot.get_me()
        return user.username or str(user.id)

    async def send(self, chat_id: int, text: str, buttons: Sequence[tuple[str, str]] = ()) -> None:
        """``sendMessage``; ``buttons`` are (title, callback_data), one per row."""
        markup = None
        if buttons:
            rows = [[InlineKeyboardButton(text=t, callback_data=d)] for t, d in buttons]
            markup = InlineKeyboardMarkup(inline_keyboard=rows)
        await self.bot.send_message(chat_id, text, reply_markup=markup)

    async def clear_buttons(self, chat_id: int, message_id: int) -> None:
        """``editMessageReplyMarkup`` without a markup: the pressed keyboard goes away."""
        await self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id)

    async def typing(self, chat_id: int) -> None:
        await self.bot.send_chat_action(chat_id, ChatAction.TYPING)

    async def answer(self, query_id: str, text: str | None = None) -> None:
        """``answerCallbackQuery``: the client stops its spinner (and shows ``text``)."""
        await self.bot.answer_callback_query(query_id, text=text)

    async def set_webhook(self, url: str, secret: str) -> None:
        await self.bot.set_webhook(url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES))

    async def delete_webhook(self) -> None:
        """Long polling needs the webhook gone; pending updates are kept."""
        await self.bot.delete_webhook(drop_pending_updates=False)

    async def get_updates(self, offset: int, timeout: int) -> list[Any]:
        """One long poll: the raw updates after ``offset`` (unchecked JSON values)."""
        url = self._server.api_url(self._token, "getUpdates")
        body = {"offset": offset, "timeout": timeout, "allowed_updates": list(ALLOWED_UPDATES)}
        try:
            async with self._http.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=timeout + 15)
            ) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(f"getUpdates failed: {type(exc).__name__}") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            code = answer.get("error_code") if isinstance(answer, dict) else None
            raise ApiError(f"getUpdates refused (error {code})")
        result = answer.get("result")
        if not isinstance(result, list):
            raise ApiError("getUpdates answered without a list of updates")
        return result
