"""The Bot API's update shapes, checked before anything else reads them.

Everything in an update came from outside (the Bot API server, or whoever found the
webhook), so each field the channel uses is checked for type, range and size here,
before aiogram's models or the hub see it. A bad update raises :class:`BadUpdate`
with a code for the sender; the update id and chat id, when they could be read, say
whom to tell. Nothing here logs, and nothing here keeps text or names.

Buttons: Telegram carries at most 64 bytes of ``callback_data`` and hands back
whatever a client sends. The channel puts there only a digest of the button (title and
payload, see :func:`button_key`); a press is looked up among the buttons the hub
offered in that conversation, so forged or stale data never reaches the bot.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from hotline.lang import Lang

MAX_BODY = 256 * 1024  # bytes of one webhook body (an update is a few kilobytes)
MAX_ID = 2**53  # Telegram's ids fit in a double
MAX_CALLBACK_DATA = 64  # bytes, the Bot API's limit
MAX_TEXT = 4096  # characters of one Bot API message (text longer is split)
_CALLBACK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_BUTTON_KEY = re.compile(r"^b:[A-Za-z0-9_-]{16}$")


class BadUpdate(ValueError):
    """An update the channel refuses; ``code`` and the message go back to the sender."""

    def __init__(self, code: str, message: str, *, chat_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.chat_id = chat_id  # whom to tell, when it could be read


@dataclass(frozen=True)
class Checked:
    """What the channel will act on: the update's kind and the fields it was checked for."""

    update_id: int
    kind: Literal["message", "callback_query", "ignored"]
    chat_id: int | None = None
    private: bool = True


def _int(value: Any, what: str, *, positive: bool = False, chat_id: int | None = None) -> int:
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or not -MAX_ID < value < MAX_ID:
        raise BadUpdate("bad_update", f"{what} must be an integer", chat_id=chat_id)
    if positive and value <= 0:
        raise BadUpdate("bad_update", f"{what} must be positive", chat_id=chat_id)
    return value


def _dict(value: Any, what: str, chat_id: int | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadUpdate("bad_update", f"{what} must be an object", chat_id=chat_id)
    return value


def _user(value: Any, what: str, chat_id: int | None) -> None:
    user = _dict(value, what, chat_id)
    _int(user.get("id"), f"{what}.id", positive=True, chat_id=chat_id)
    if not isinstance(user.get("is_bot", False), bool):
        raise BadUpdate("bad_update", f"{what}.is_bot must be a boolean", chat_id=chat_id)
    for key in ("first_name", "last_name", "username", "language_code"):
        item = user.get(key)
        if item is not None and (not isinstance(item, str) or len(item) > 256):
            raise BadUpdate("bad_update", f"{what}.{key} must be a short string", chat_id=chat_id)
        if item is not None and not storable(item):
            raise BadUpdate("bad_update", f"{what}.{key} has invalid characters", chat_id=chat_id)


def storable(text: str) -> bool:
    """Whether ``text`` can be stored in every database (UTF-8, no NUL)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def check_update(raw: Any, max_text: int) -> Checked:
    """Check the fields of ``raw`` (a decoded JSON update) the channel will use."""
    update = _dict(raw, "the update")
    update_id = _int(update.get("update_id"), "update_id")
    if update_id < 0:
        raise BadUpdate("bad_update", "update_id must not be negative")
    if "message" in update:
        message = _dict(update["message"], "message")
        chat = _dict(message.get("chat"), "message.chat")
        chat_id = _int(chat.get("id"), "message.chat.id")
        if not isinstance(chat.get("type"), str):
            raise BadUpdate("bad_update", "message.chat.type must be a string", chat_id=chat_id)
        _int(message.get("message_id"), "message.message_id", positive=True, chat_id=chat_id)
        _int(message.get("date", 0), "message.date", chat_id=chat_id)
        if "from" in message:
            _user(message["from"], "message.from", chat_id)
        text = message.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise BadUpdate("bad_update", "message.text must be a string", chat_id=chat_id)
            if len(text) > max_text:
                raise BadUpdate(
                    "text_too_long",
                    f"message text is longer than {max_text} characters",
                    chat_id=chat_id,
                )
            if not storable(text):
                raise BadUpdate(
                    "bad_text", "message text contains invalid characters", chat_id=chat_id
                )
        private = chat["type"] == "private"
        return Checked(update_id, "message", chat_id, private)
    if "callback_query" in update:
        query = _dict(update["callback_query"], "callback_query")
        if not isinstance(query.get("id"), str) or not _CALLBACK_ID.match(query["id"]):
            raise BadUpdate("bad_update", "callback_query.id must be a short id")
        from_chat: int | None = None
        held = query.get("message")
        if held is not None:
            chat = _dict(_dict(held, "callback_query.message").get("chat"), "its chat")
            from_chat = _int(chat.get("id"), "callback_query.message.chat.id")
            _int(held.get("message_id"), "callback_query.message.message_id", chat_id=from_chat)
            if not isinstance(chat.get("type"), str):
                raise BadUpdate("bad_update", "the chat's type must be a string", chat_id=from_chat)
        _user(query.get("from"), "callback_query.from", from_chat)
        data = query.get("data")
        if data is not None and (
            not isinstance(data, str)
            or not storable(data)
            or len(data.encode("utf-8")) > MAX_CALLBACK_DATA
        ):
            raise BadUpdate(
                "bad_update", "callback_query.data must be at most 64 bytes", chat_id=from_chat
            )
        if not isinstance(query.get("chat_instance", ""), str):
            raise BadUpdate("bad_update", "callback_query.chat_instance must be a string")
        private = held is None or held["chat"]["type"] == "private"
        return Checked(update_id, "callback_query", from_chat, private)
    return Checked(update_id, "ignored")  # edits, channel posts, ...: not for this channel


def button_key(title: str, payload: str) -> str:
    """The ``callback_data`` of a button: 18 bytes whatever the payload's length."""
    digest = hashlib.sha256(f"{title}\0{payload}".encode()).digest()[:12]
    return "b:" + base64.urlsafe_b64encode(digest).decode("ascii")


def is_button_key(data: str) -> bool:
    return bool(_BUTTON_KEY.match(data))


def language(code: str | None, fallback: Lang = "zh") -> Lang:
    """The hotline language for Telegram's ``language_code`` (an IETF tag): Chinese for
    ``zh*``, English for any other language the user set, ``fallback`` without one."""
    if not code or not _LANGUAGE_CODE.match(code):
        return fallback
    return "zh" if code.lower().startswith("zh") else "en"


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, at line ends where possible."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut + 1 if cut > limit // 2 else limit
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces
