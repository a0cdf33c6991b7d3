"""A Telegram Bot API server double, speaking the real Bot API over HTTP.

Telegram's cloud cannot be reached from here, so the Telegram channel (aiogram 3) talks
to this server instead, exactly as it would to https://api.telegram.org: the bot token
in the path (``/bot<token>/<method>``), parameters as a query string, a form
(url-encoded or multipart, JSON-typed fields such as ``reply_markup`` as JSON strings:
what aiogram sends) or a JSON body, and answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": ..., "description": ...}``.

Bot side: ``getMe``, ``getUpdates`` (long polling with ``offset`` and ``timeout``; an
offset confirms the updates before it), ``setWebhook`` / ``deleteWebhook`` /
``getWebhookInfo`` (with a webhook set every update is POSTed to it with the
``X-Telegram-Bot-Api-Secret-Token`` header, and ``getUpdates`` answers 409 as
Telegram's does), ``sendMessage`` (with an ``inline_keyboard``: button text and
``callback_data`` of at most 64 bytes checked), ``sendChatAction``,
``answerCallbackQuery`` (for a query id it issued) and ``editMessageReplyMarkup``.

Citizen side (``/_double/<token>/...``, JSON; what Telegram's apps would do): a user
writes (``send``), presses an inline button (``press``), an update is delivered again
(``redeliver``), a raw body reaches the webhook (``raw``), and what the bot sent to a
chat is read (``chats/<id>``, long-polled with ``after`` and ``wait``). Each token is
its own bot with its own state, so tests sharing one server do not meet.

Run it alone for ``make run`` and ``hotline simulate telegram`` (see
channel_connectors/telegram/README.md)::

    .venv/bin/python -m tests.telegram_api --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_TOKEN = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{1,100}$")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096


class ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass
class Bot:
    """One bot's state: its pending updates, its webhook, the chats it wrote to."""

    token: str
    id: int
    updates: list[dict[str, Any]] = field(default_factory=list)  # not yet confirmed
    sent_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    confirmed: int = 0  # every update_id below this was confirmed by an offset
    webhook_url: str = ""
    webhook_secret: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)  # what the bot sent
    chat_messages: dict[int, int] = field(default_factory=dict)  # chat -> last message_id
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)  # issued callback ids
    answers: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # methods called, in order
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    query_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def user(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": "12309 Hotline",
            "username": f"hotline_{self.id}_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def next_message_id(self, chat_id: int) -> int:
        self.chat_messages[chat_id] = self.chat_messages.get(chat_id, 0) + 1
        return self.chat_messages[chat_id]


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _fail(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )


class BotApiDouble:
    """The server; ``start()`` in a running loop, or ``start_in_thread()`` for tests."""

    def __init__(self) -> None:
        self.bots: dict[str, Bot] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- serving
    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self.method)
        app.router.add_post("/_double/{token}/send", self.c_send)
        app.router.add_post("/_double/{token}/press", self.c_press)
        app.router.add_post("/_double/{token}/redeliver", self.c_redeliver)
        app.router.add_post("/_double/{token}/raw", self.c_raw)
        app.router.add_get("/_double/{token}/chats/{chat_id}", self.c_chat)
        app.router.add_get("/_double/{token}/state", self.c_state)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.loop = asyncio.get_running_loop()
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def start_in_thread(self) -> str:
        """Serve from a daemon thread with its own loop (tests whose fixtures are sync)."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, name="telegram-bot-api-double", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the Bot API double did not start")
        return self.url

    def bot(self, token: str) -> Bot:
        found = _TOKEN.match(token)
        if not found:
            raise ApiError(401, "Unauthorized")
        if token not in self.bots:
            self.bots[token] = Bot(token, int(found.group(1)))
        return self.bots[token]

    # ------------------------------------------------------------ bot side
    async def method(self, request: web.Request) -> web.Response:
        try:
            bot = self.bot(request.match_info["token"])
            params = await _params(request)
            name = request.match_info["method"]
            handler = _METHODS.get(name.lower())
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            bot.calls.append(name)
            result = await handler(self, bot, params)
        except ApiError as exc:
            return _fail(exc.code, exc.description)
        async with bot.changed:
            bot.changed.notify_all()
        return _ok(result)

    async def get_me(self, bot: Bot, params: dict[str, Any]) -> Any:
        return bot.user()

    async def get_updates(self, bot: Bot, params: dict[str, Any]) -> Any:
        if bot.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset", 0)
        timeout = min(_int_param(params, "timeout", 0), 50)
        limit = max(1, min(_int_param(params, "limit", 100), 100))
        if offset:
            bot.confirmed = max(bot.confirmed, offset)
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
            async with bot.changed:
                bot.changed.notify_all()
        deadline = time.monotonic() + timeout
        async with bot.changed:
            while not bot.updates and not bot.webhook_url:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bot.changed.wait(), left)
        return bot.updates[:limit]

    async def set_webhook(self, bot: Bot, params: dict[str, Any]) -> Any:
        url = str(params.get("url", ""))
        if url and not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: invalid URL")
        secret = str(params.get("secret_token", ""))
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: bad webhook: secret token contains invalid chars")
        if _bool_param(params, "drop_pending_updates"):
            bot.updates.clear()
        bot.webhook_url, bot.webhook_secret = url, secret
        pending, bot.updates = bot.updates, []
        if pending and url:  # what waited for getUpdates now goes to the webhook
            task = asyncio.create_task(self._flush(bot, pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _flush(self, bot: Bot, pending: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.1)  # after the answer to setWebhook, as Telegram does
        for update in pending:
            await self._post(bot, json.dumps(update))

    async def delete_webhook(self, bot: Bot, params: dict[str, Any]) -> Any:
        if _bool_param(params, "drop_pending_updates"):
            bot.updates.clear()
        bot.webhook_url, bot.webhook_secret = "", ""
        return True

    async def get_webhook_info(self, bot: Bot, params: dict[str, Any]) -> Any:
        return {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates),
        }

    async def send_message(self, bot: Bot, params: dict[str, Any]) -> Any:
        chat_id = _int_param(params, "chat_id", None)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        markup = _json_param(params, "reply_markup")
        buttons = _inline_keyboard(markup) if markup is not None else []
        message = {
            "message_id": bot.next_message_id(chat_id),
            "from": bot.user(),
            "chat": {"id": chat_id, "type": "private", "first_name": "Citizen"},
            "date": int(time.time()),
            "text": text,
        }
        if markup is not None:
            message["reply_markup"] = markup
        bot.messages.append(
            {
                "seq": len(bot.messages) + 1,
                "chat_id": chat_id,
                "message": message,
                "text": text,
                "buttons": buttons,
            }
        )
        return message

    async def send_chat_action(self, bot: Bot, params: dict[str, Any]) -> Any:
        bot.actions.append({"chat_id": _int_param(params, "chat_id", None), **params})
        return True

    async def answer_callback_query(self, bot: Bot, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in bot.queries or bot.queries[query_id].get("answered"):
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        bot.queries[query_id]["answered"] = True
        bot.answers.append({"callback_query_id": query_id, "text": params.get("text")})
        return True

    async def edit_message_reply_markup(self, bot: Bot, params: dict[str, Any]) -> Any:
        chat_id = _int_param(params, "chat_id", None)
        message_id = _int_param(params, "message_id", None)
        for sent in bot.messages:
            if sent["chat_id"] == chat_id and sent["message"]["message_id"] == message_id:
                markup = _json_param(params, "reply_markup")
                sent["buttons"] = _inline_keyboard(markup) if markup is not None else []
                sent["message"]["reply_markup"] = markup
                return sent["message"]
        raise ApiError(400, "Bad Request: message to edit not found")

    # -------------------------------------------------------- citizen side
    def new_update(self, bot: Bot, body: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(bot.update_ids), **body}
        bot.sent_updates[update["update_id"]] = update
        return update

    def message_update(self, bot: Bot, user: dict[str, Any], text: str) -> dict[str, Any]:
        chat_id = int(user["id"])
        message: dict[str, Any] = {
            "message_id": bot.next_message_id(chat_id),
            "from": {"is_bot": False, "first_name": "Citizen", **user},
            "chat": {"id": chat_id, "type": "private", "first_name": "Citizen"},
            "date": int(time.time()),
            "text": text,
        }
        command = re.match(r"^/[A-Za-z0-9_]+(?:@\w+)?", text)
        if command:
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(command.group(0))}
            ]
        return self.new_update(bot, {"message": message})

    def press_update(
        self, bot: Bot, user: dict[str, Any], message_id: int, data: str
    ) -> dict[str, Any]:
        chat_id = int(user["id"])
        held = next(
            (
                m["message"]
                for m in bot.messages
                if m["chat_id"] == chat_id and m["message"]["message_id"] == message_id
            ),
            None,
        )
        if held is None:
            raise ApiError(400, "no such message of the bot in this chat")
        query_id = f"{bot.id}{next(bot.query_ids):08d}"
        bot.queries[query_id] = {"chat_id": chat_id}
        query = {
            "id": query_id,
            "from": {"is_bot": False, "first_name": "Citizen", **user},
            "message": held,
            "chat_instance": f"ci{chat_id}",
            "data": data,
        }
        return self.new_update(bot, {"callback_query": query})

    async def deliver(self, bot: Bot, update: dict[str, Any]) -> dict[str, Any]:
        """To the webhook (its answer) or into the getUpdates queue."""
        body = json.dumps(update)  # ensure_ascii: lone surrogates go as \\udXXX escapes
        if bot.webhook_url:
            return {"update_id": update["update_id"], **await self._post(bot, body)}
        bot.updates.append(update)
        async with bot.changed:
            bot.changed.notify_all()
        return {"update_id": update["update_id"], "queued": True}

    async def _post(self, bot: Bot, body: str, secret: str | None = None) -> dict[str, Any]:
        assert self._http is not None
        headers = {"Content-Type": "application/json"}
        secret = bot.webhook_secret if secret is None else secret
        if secret:
            headers[SECRET_HEADER] = secret
        try:
            async with self._http.post(
                bot.webhook_url, data=body.encode("utf-8", "surrogatepass"), headers=headers
            ) as response:
                text = await response.text()
        except aiohttp.ClientError as exc:  # Telegram would retry later; tests want to know
            return {"status": 502, "answer": f"webhook unreachable: {type(exc).__name__}"}
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return {"status": response.status, "answer": answer}

    async def consumed(self, bot: Bot, update_id: int, timeout: float) -> bool:
        """Polling: the bot confirmed ``update_id`` (an offset past it)."""
        async with asyncio.timeout(timeout), bot.changed:
            while bot.confirmed <= update_id:
                await bot.changed.wait()
        return True

    async def c_send(self, request: web.Request) -> web.Response:
        return await self._citizen(request, "send")

    async def c_press(self, request: web.Request) -> web.Response:
        return await self._citizen(request, "press")

    async def c_redeliver(self, request: web.Request) -> web.Response:
        return await self._citizen(request, "redeliver")

    async def c_raw(self, request: web.Request) -> web.Response:
        return await self._citizen(request, "raw")

    async def _citizen(self, request: web.Request, action: str) -> web.Response:
        try:
            bot = self.bot(request.match_info["token"])
            body = await request.json()
            if action == "send":
                update = self.message_update(bot, body["user"], body["text"])
            elif action == "press":
                update = self.press_update(bot, body["user"], int(body["message_id"]), body["data"])
            elif action == "redeliver":
                update = bot.sent_updates[int(body["update_id"])]
            else:
                if not bot.webhook_url:
                    raise ApiError(400, "raw bodies go to a webhook only")
                secret = body.get("secret")
                return web.json_response(await self._post(bot, body["body"], secret))
            result = await self.deliver(bot, update)
            if result.get("queued") and body.get("wait_consumed"):
                await self.consumed(bot, update["update_id"], float(body["wait_consumed"]))
            if "message" in update:
                result["message_id"] = update["message"]["message_id"]
            if "callback_query" in update:
                result["callback_query_id"] = update["callback_query"]["id"]
            return web.json_response(result)
        except ApiError as exc:
            return _fail(exc.code, exc.description)
        except (KeyError, TypeError, ValueError) as exc:
            return _fail(400, f"bad citizen request: {type(exc).__name__}")

    async def c_chat(self, request: web.Request) -> web.Response:
        """What the bot sent to the chat after ``after`` (a seq), waiting up to ``wait``."""
        bot = self.bot(request.match_info["token"])
        chat_id = int(request.match_info["chat_id"])
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 60.0)
        deadline = time.monotonic() + wait

        def found() -> list[dict[str, Any]]:
            return [m for m in bot.messages if m["chat_id"] == chat_id and m["seq"] > after]

        async with bot.changed:
            while not found() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bot.changed.wait(), deadline - time.monotonic())
        last = max((m["seq"] for m in bot.messages), default=0)
        return web.json_response(
            {
                "messages": [
                    {
                        "seq": m["seq"],
                        "message_id": m["message"]["message_id"],
                        "text": m["text"],
                        "buttons": m["buttons"],
                    }
                    for m in found()
                ],
                "last": last,
            }
        )

    async def c_state(self, request: web.Request) -> web.Response:
        bot = self.bot(request.match_info["token"])
        return web.json_response(
            {
                "webhook_url": bot.webhook_url,
                "pending": len(bot.updates),
                "confirmed": bot.confirmed,
                "answers": bot.answers,
                "actions": len(bot.actions),
                "calls": bot.calls,
            }
        )


_METHODS = {
    "getme": BotApiDouble.get_me,
    "getupdates": BotApiDouble.get_updates,
    "setwebhook": BotApiDouble.set_webhook,
    "deletewebhook": BotApiDouble.delete_webhook,
    "getwebhookinfo": BotApiDouble.get_webhook_info,
    "sendmessage": BotApiDouble.send_message,
    "sendchataction": BotApiDouble.send_chat_action,
    "answercallbackquery": BotApiDouble.answer_callback_query,
    "editmessagereplymarkup": BotApiDouble.edit_message_reply_markup,
}


async def _params(request: web.Request) -> dict[str, Any]:
    """Query string, then a JSON body or a form (url-encoded or multipart)."""
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request: parameters must be a JSON object")
        params.update(body)
    else:
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _int_param(params: dict[str, Any], name: str, default: int | None) -> int:
    value = params.get(name, default)
    if value is None:
        raise ApiError(400, f"Bad Request: {name} is empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: {name} must be an integer") from None


def _bool_param(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    return value is True or str(value).lower() == "true"


def _json_param(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):  # a form field carries JSON as a string
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


def _inline_keyboard(markup: Any) -> list[dict[str, str]]:
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    buttons = []
    for row in markup["inline_keyboard"]:
        if not isinstance(row, list):
            raise ApiError(400, 'Bad Request: field "inline_keyboard" must be an Array of Arrays')
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise ApiError(400, 'Bad Request: can\'t find field "text"')
            data = button.get("callback_data")
            if data is not None and (
                not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64
            ):
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            buttons.append({"text": button["text"], "callback_data": data or ""})
    return buttons


_shared: BotApiDouble | None = None
_shared_lock = threading.Lock()


def shared_double() -> BotApiDouble:
    """One server for the test session, in its own thread; each test uses its own token."""
    global _shared
    with _shared_lock:
        if _shared is None:
            double = BotApiDouble()
            double.start_in_thread()
            _shared = double
        return _shared


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Telegram Bot API double")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()

    async def serve() -> None:
        double = BotApiDouble()
        url = await double.start(args.host, args.port)
        print(f"Bot API double at {url} (any token; Ctrl-C stops it)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await double.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
