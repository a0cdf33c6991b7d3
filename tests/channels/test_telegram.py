"""The Telegram channel: aiogram 3 in the hub against the Bot API double
(``tests/telegram_api.py``), which speaks the Bot API over HTTP and delivers updates by
webhook (with the secret header) or ``getUpdates``. The shared behaviour (a report, case
status, handoff, ...) is the contract suite's; these are the channel's own: the
webhook's secret, long polling, callback queries, ``language_code``, redelivery, bad
updates, ``/healthz`` and ``hotline simulate telegram``.

Tests marked ``rasa`` need the real Rasa; the others run with Rasa unreachable (the
hub then answers every message with its "bot unavailable" line and queues it).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from channel_connectors.telegram.protocol import (
    BadUpdate,
    button_key,
    check_update,
    is_button_key,
    language,
    split_text,
)
from channel_connectors.telegram.settings import LOCAL_TOKEN, load
from hotline.appkeys import HUB
from hotline.config import ConfigError, Settings
from hotline.web import create_app
from tests.conftest import ROOT, free_port
from tests.telegram_api import shared_double

UNAVAILABLE = "智能助手暂时无法回复"


# ------------------------------------------------------------------ the bot's side
class Telegram:
    """This test's bot on the double, and the users writing to it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = shared_double().url
        self.base = f"{self.url}/_double/{token}"
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.http.close()

    async def post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/{action}", json=body) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            return answer

    async def send(self, user: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
        return await self.post("send", {"user": user, "text": text, **extra})

    async def raw(self, body: str, secret: str | None = None) -> dict[str, Any]:
        return await self.post("raw", {"body": body, "secret": secret})

    async def chat(self, chat_id: int, after: int = 0, wait: float = 0) -> list[dict[str, Any]]:
        url = f"{self.base}/chats/{chat_id}?after={after}&wait={wait}"
        async with self.http.get(url) as response:
            return list((await response.json())["messages"])

    async def state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/state") as response:
            return dict(await response.json())

    async def call(self, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
        """A Bot API call as the bot makes it (for the double's own checks)."""
        async with self.http.post(f"{self.url}/bot{self.token}/{method}", json=params) as r:
            return r.status, dict(await r.json())


def new_user(lang: str = "zh-hans") -> dict[str, Any]:
    return {"id": 10_000 + secrets.randbelow(10**9), "language_code": lang, "first_name": "张三"}


def new_token() -> str:
    return f"{secrets.randbelow(10**9) + 1}:{secrets.token_urlsafe(30)}"


def section(token: str, mode: str, **extra: str) -> dict[str, str]:
    return {
        "api_url": shared_double().url,
        "token": token,
        "mode": mode,
        "webhook_secret": "webhook-secret-" + "s" * 20,
        "poll_timeout": "1",
        **extra,
    }


@pytest.fixture
async def telegram() -> AsyncIterator[Telegram]:
    bot = Telegram(new_token())
    yield bot
    await bot.close()


def telegram_settings(settings: Settings, sec: dict[str, str], **core: Any) -> Settings:
    channels = (*settings.channels, "telegram")
    sections = {**settings.channel_sections, "telegram": sec}
    return replace(settings, channels=channels, channel_sections=sections, **core)


async def start(settings: Settings) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    return server


@pytest.fixture
async def webhook_hub(settings: Settings, telegram: Telegram) -> AsyncIterator[TestServer]:
    """Webhook mode, Rasa unreachable."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = await start(
        telegram_settings(settings, section(telegram.token, "webhook"), rasa_url=dead)
    )
    yield server
    await server.close()


@pytest.fixture
async def polling_hub(settings: Settings, telegram: Telegram) -> AsyncIterator[TestServer]:
    """Long polling, Rasa unreachable."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = await start(
        telegram_settings(settings, section(telegram.token, "polling"), rasa_url=dead)
    )
    yield server
    await server.close()


async def citizen_lines(server: TestServer, chat_id: int) -> list[str]:
    hub = server.app[HUB]
    await hub.drain()
    conversation = await hub.conversations.latest("telegram", str(chat_id))
    if conversation is None:
        return []
    rows = await hub.conversations.history(conversation.id)
    return [m.text for m in rows if m.author == "citizen"]


async def replies_after(
    telegram: Telegram, chat_id: int, after: int = 0, wait: float = 10
) -> list[dict[str, Any]]:
    return await telegram.chat(chat_id, after, wait)


# ------------------------------------------------------------------- pure parts
def test_settings_off_without_a_token_and_local_api_needs_none(settings: Settings) -> None:
    off = load({}, settings)
    assert not off.enabled and "HOTLINE_TELEGRAM_TOKEN" in off.off_reason
    local = load({"api_url": "http://127.0.0.1:8081"}, settings)
    assert local.enabled and local.local_api and local.token == LOCAL_TOKEN
    shown = load({"token": new_token(), "mode": "webhook"}, settings).describe()
    assert shown["token"] == "<set>" and shown["webhook_secret"] == "<set>"
    assert shown["mode"] == "webhook" and shown["api_url"] == "https://api.telegram.org"
    for bad in (
        {"mode": "push"},
        {"token": "not-a-token"},
        {"webhook_secret": "short"},
        {"x": "1"},
    ):
        with pytest.raises(ConfigError, match="HOTLINE_TELEGRAM_"):
            load(bad, settings)


def test_callback_data_fits_and_is_only_a_digest() -> None:
    long_payload = '/kb_answer{"kb_article":"' + "a" * 60 + '"}'
    key = button_key("查询案件进度" * 10, long_payload)
    assert len(key.encode()) <= 64 and is_button_key(key)
    assert key != button_key("查询案件进度", long_payload)
    assert not is_button_key("/greet") and not is_button_key("b:" + "x" * 40)


def test_language_code_and_splitting() -> None:
    assert language("zh-hans") == "zh" and language("zh-TW") == "zh"
    assert language("en") == "en" and language("ru") == "en"
    assert language(None) == "zh" and language("!!") == "zh"
    pieces = split_text("行\n" * 3000)
    assert all(len(p) <= 4096 for p in pieces) and "".join(pieces) == "行\n" * 3000


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"update_id": "1"},
        {"update_id": True, "message": {}},
        {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1}}},
        {"update_id": 1, "message": {"message_id": 0, "chat": {"id": 1, "type": "private"}}},
        {"update_id": 1, "callback_query": {"id": "1", "from": {"id": 1}, "data": "x" * 65}},
        {"update_id": 1, "callback_query": {"id": "no spaces", "from": {"id": 1}}},
    ],
)
def test_malformed_updates_are_refused(raw: Any) -> None:
    with pytest.raises(BadUpdate):
        check_update(raw, 2000)


def test_unstorable_and_long_text_is_refused_naming_the_chat() -> None:
    for text, code in (
        ("a\x00b", "bad_text"),
        ("\ud800", "bad_text"),
        ("长" * 2001, "text_too_long"),
    ):
        raw = {
            "update_id": 7,
            "message": {
                "message_id": 3,
                "date": 0,
                "chat": {"id": 42, "type": "private"},
                "text": text,
            },
        }
        with pytest.raises(BadUpdate) as caught:
            check_update(raw, 2000)
        assert caught.value.code == code and caught.value.chat_id == 42


async def test_the_double_speaks_the_bot_api(telegram: Telegram) -> None:
    status, me = await telegram.call("getMe")
    assert status == 200 and me["ok"] and me["result"]["is_bot"]
    status, bad = await telegram.call("sendMessage", chat_id=1, text="")
    assert status == 400 and bad == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message text is empty",
    }
    markup = {"inline_keyboard": [[{"text": "x", "callback_data": "y" * 65}]]}
    status, bad = await telegram.call("sendMessage", chat_id=1, text="x", reply_markup=markup)
    assert status == 400 and "BUTTON_DATA_INVALID" in bad["description"]
    async with telegram.http.get(f"{telegram.url}/botnope/getMe") as response:
        assert response.status == 401


# ---------------------------------------------------------------- webhook mode
async def test_the_webhook_refuses_a_missing_or_wrong_secret(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    update = json.dumps(
        {
            "update_id": 9,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": user["id"], "type": "private"},
                "text": "你好",
            },
        }
    )
    url = str(webhook_hub.make_url("/channels/telegram/webhook"))
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=update) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "unauthorized"
    wrong = await telegram.raw(update, secret="webhook-secret-" + "t" * 20)
    assert wrong["status"] == 403 and wrong["answer"]["error"] == "forbidden"
    assert await citizen_lines(webhook_hub, user["id"]) == []
    state = await telegram.state()
    assert state["webhook_url"].endswith("/channels/telegram/webhook")  # setWebhook at start


async def test_a_message_is_stored_once_and_answered(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    sent = await telegram.send(user, "你好")
    assert sent["status"] == 200 and sent["answer"]["status"] == "accepted"
    again = await telegram.post("redeliver", {"update_id": sent["update_id"]})
    assert again["status"] == 200 and again["answer"]["duplicate"] is True
    assert await citizen_lines(webhook_hub, user["id"]) == ["你好"]
    replies = await replies_after(telegram, user["id"])
    assert [r["text"] for r in replies].count(next(r["text"] for r in replies)) == 1
    assert UNAVAILABLE in "\n".join(r["text"] for r in replies)


async def test_bad_updates_get_400_and_nothing_accepted_is_lost(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    assert (await telegram.send(user, "第一条"))["status"] == 200
    for body in ("{oops", "[]", '{"update_id": -1}', "[" * 50000, "\ud800"):
        refused = await telegram.raw(body)
        assert refused["status"] == 400 and refused["answer"]["error"], refused
    for text in ("a\x00b", "\udfff", "长" * 2001):
        refused = await telegram.send(user, text)
        assert refused["status"] == 400, refused
        assert refused["answer"]["error"] in ("bad_text", "text_too_long")
    too_big = await telegram.raw("x" * 300_000)
    assert too_big["status"] == 413
    assert (await telegram.send(user, "第二条"))["status"] == 200
    assert await citizen_lines(webhook_hub, user["id"]) == ["第一条", "第二条"]


async def test_language_code_starts_the_conversation_then_the_text_decides(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    hub = webhook_hub.app[HUB]
    english = new_user("en-GB")
    await telegram.send(english, "12345")  # digits: no language of their own
    await hub.drain()
    conversation = await hub.conversations.latest("telegram", str(english["id"]))
    assert conversation is not None and conversation.language == "en"
    replies = await replies_after(telegram, english["id"])
    assert "assistant" in "\n".join(r["text"] for r in replies)
    await telegram.send(english, "我要举报")
    await hub.drain()
    conversation = await hub.conversations.latest("telegram", str(english["id"]))
    assert conversation is not None and conversation.language == "zh"


async def test_a_forged_or_stale_button_is_answered_and_not_stored(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    await telegram.send(user, "你好")
    await webhook_hub.app[HUB].drain()
    sent = await replies_after(telegram, user["id"])
    for data in ("/greet", button_key("查询案件进度", "/check_status"), "b:" + "A" * 16):
        pressed = await telegram.post(
            "press", {"user": user, "message_id": sent[-1]["message_id"], "data": data}
        )
        assert pressed["status"] == 200 and pressed["answer"]["status"] == "stale_button"
    answers = (await telegram.state())["answers"]
    assert len(answers) == 3 and all(a["text"] for a in answers)  # the spinner stops
    assert await citizen_lines(webhook_hub, user["id"]) == ["你好"]


async def test_other_chats_and_non_text_messages(
    webhook_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    group = {
        "update_id": 77,
        "message": {
            "message_id": 5,
            "date": 0,
            "chat": {"id": -100123, "type": "supergroup", "title": "g"},
            "text": "hi",
        },
    }
    answer = await telegram.raw(json.dumps(group), secret="webhook-secret-" + "s" * 20)
    assert answer["status"] == 200 and answer["answer"]["status"] == "ignored"
    photo = {
        "update_id": 78,
        "message": {
            "message_id": 6,
            "date": 0,
            "chat": {"id": user["id"], "type": "private"},
            "from": {"id": user["id"], "is_bot": False, "first_name": "x"},
            "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
        },
    }
    answer = await telegram.raw(json.dumps(photo), secret="webhook-secret-" + "s" * 20)
    assert answer["status"] == 200 and answer["answer"]["status"] == "not_text"
    told = await replies_after(telegram, user["id"])
    assert "文字" in told[0]["text"]
    assert await citizen_lines(webhook_hub, user["id"]) == []


async def test_healthz_reports_the_bot(webhook_hub: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(str(webhook_hub.make_url("/healthz"))) as response:
            body = await response.json()
    found = body["components"]["channel:telegram"]
    assert found["status"] == "ok" and "@hotline_" in found["detail"]


async def test_without_a_token_the_channel_is_off(settings: Settings) -> None:
    server = await start(telegram_settings(settings, {}))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(str(server.make_url("/healthz"))) as response:
                body = await response.json()
        found = body["components"]["channel:telegram"]
        assert found["status"] == "off" and "TOKEN" in found["detail"]
    finally:
        await server.close()


async def test_past_the_rate_a_message_is_kept_but_not_answered(
    settings: Settings, telegram: Telegram
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    sec = section(telegram.token, "webhook", rate_limit="2", rate_window="600")
    server = await start(telegram_settings(settings, sec, rasa_url=dead))
    try:
        user = new_user()
        answers = [(await telegram.send(user, f"第{n}条"))["answer"] for n in range(4)]
        assert [a["status"] for a in answers] == ["accepted"] * 2 + ["rate_limited"] * 2
        assert await citizen_lines(server, user["id"]) == [f"第{n}条" for n in range(4)]
        told = [m["text"] for m in await telegram.chat(user["id"])]
        assert told.count("您发送得太快了，请稍后再发。") == 1  # one notice per window
    finally:
        await server.close()


# ---------------------------------------------------------------- polling mode
async def test_long_polling_takes_updates_and_skips_bad_ones(
    polling_hub: TestServer, telegram: Telegram
) -> None:
    user = new_user()
    state = await telegram.state()
    assert state["webhook_url"] == "" and "deleteWebhook" in state["calls"]
    sent = await telegram.send(user, "你好", wait_consumed=10)
    assert sent["queued"] is True
    await polling_hub.app[HUB].drain()
    replies = await replies_after(telegram, user["id"])
    assert UNAVAILABLE in "\n".join(r["text"] for r in replies)
    last = replies[-1]["seq"]
    refused = await telegram.send(user, "坏\x00消息", wait_consumed=10)  # logged and skipped
    told = await replies_after(telegram, user["id"], last)
    assert "无法接收" in told[0]["text"] and "could not be accepted" in told[0]["text"]
    await telegram.send(user, "还在吗", wait_consumed=10)
    assert await citizen_lines(polling_hub, user["id"]) == ["你好", "还在吗"]
    assert (await telegram.state())["confirmed"] > refused["update_id"]


# ------------------------------------------------------------ with the real bot
@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_start_greets_in_the_clients_language_and_a_button_press_is_a_turn(
    settings: Settings, telegram: Telegram
) -> None:
    server = await start(telegram_settings(settings, section(telegram.token, "webhook")))
    try:
        user = new_user("en")
        start_update = await telegram.send(user, "/start")
        assert start_update["answer"]["status"] == "greeted"
        async with asyncio.timeout(30):
            greeting = await telegram.chat(user["id"], 0, 20)
        assert greeting and "12309" in greeting[-1]["text"]
        assert not any("\u4e00" <= c <= "\u9fff" for c in greeting[-1]["text"])  # English
        buttons = {b["text"]: b["callback_data"] for b in greeting[-1]["buttons"]}
        assert "Check my case" in buttons
        assert all(len(d.encode()) <= 64 for d in buttons.values())
        pressed = await telegram.post(
            "press",
            {
                "user": user,
                "message_id": greeting[-1]["message_id"],
                "data": buttons["Check my case"],
            },
        )
        assert pressed["answer"]["status"] == "accepted"
        await server.app[HUB].drain()
        asked = await telegram.chat(user["id"], greeting[-1]["seq"], 10)
        assert "case code" in "\n".join(m["text"] for m in asked).lower()
        answers = (await telegram.state())["answers"]
        assert answers[-1]["callback_query_id"] == pressed["callback_query_id"]
        assert await citizen_lines(server, user["id"]) == ["/start", "Check my case"]
        # The pressed keyboard is gone from the greeting (a choice is made once).
        shown = {m["message_id"]: m["buttons"] for m in await telegram.chat(user["id"])}
        assert shown[greeting[-1]["message_id"]] == []
    finally:
        await server.close()


# ------------------------------------------------------ hotline simulate telegram
async def simulate(
    settings: Settings, token: str, *args: str, **env_extra: str
) -> tuple[int, list[str], str]:
    env = {
        **os.environ,
        "HOTLINE_VAR_DIR": str(settings.var_dir),
        "HOTLINE_RASA_TOKEN": settings.rasa_token,
        "HOTLINE_SECRET_KEY": settings.secret_key.hex(),
        "HOTLINE_CHANNELS": "webchat,telegram",
        "HOTLINE_TELEGRAM_API_URL": shared_double().url,
        "HOTLINE_TELEGRAM_TOKEN": token,
        **env_extra,
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hotline"),
        "simulate",
        "telegram",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode().splitlines(), err.decode()


@pytest.mark.parametrize("mode", ["webhook", "polling"])
async def test_hotline_simulate_telegram(
    base_settings: Settings, tmp_path: Path, telegram: Telegram, mode: str
) -> None:
    """The command drives the real loop: the double delivers the user's update to the
    hub (webhook or getUpdates) and prints what the hub sent back by sendMessage."""
    dead = f"http://127.0.0.1:{free_port()}"
    settings = replace(base_settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    server = await start(telegram_settings(settings, section(telegram.token, mode), rasa_url=dead))
    try:
        code, lines, err = await simulate(
            settings, telegram.token, "--user", "1001", "--text", "你好", "--quiet", "1"
        )
        assert code == 0 and lines, err
        replies = [json.loads(line) for line in lines]
        assert all(r["channel"] == "telegram" and r["text"] for r in replies)
        assert UNAVAILABLE in "\n".join(r["text"] for r in replies)
        assert await citizen_lines(server, 1001) == ["你好"]
    finally:
        await server.close()


async def test_hotline_simulate_telegram_without_a_hub_or_a_local_api(
    base_settings: Settings, telegram: Telegram
) -> None:
    code, lines, _err = await simulate(
        base_settings, telegram.token, "--user", "1001", "--text", "你好", "--wait", "2"
    )
    assert code == 1 and lines == []  # nobody answers the bot's updates
    code, _lines, err = await simulate(
        base_settings,
        telegram.token,
        "--user",
        "1001",
        "--text",
        "你好",
        HOTLINE_TELEGRAM_API_URL="https://api.telegram.org",
    )
    assert code == 2 and "local Bot API" in err
