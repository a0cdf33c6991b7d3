"""The widget waits out the per-address conversation limit instead of hammering it.

Real hub on a real port (no Rasa: conversations go to people, which is enough for
delivery), real widget in Debian's Chromium. The address's one new conversation of the
window is spent by another client; the widget's upgrade is refused (429, which a browser
cannot read), it asks ``/ws/chat/limit`` how long to wait, shows a countdown and does not
try again before then, even when the browser says it is back online or visible.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, WebSocket, WebSocketRoute, expect
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Message
from hotline.web import create_app
from tests.chat import ChatClient
from tests.conftest import free_port
from tests.test_browser import browser

__all__ = ["browser"]  # a fixture, used by name

pytestmark = pytest.mark.browser

TYPED = "等待期间输入的消息 <b>1</b>"  # typed while the widget waits


async def stored(settings: Settings, text: str) -> list[tuple[str, str]]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Message.conversation_id, Message.author).where(Message.text == text)
            )
            return [(r.conversation_id, r.author) for r in rows]
    finally:
        await engine.dispose()


def without_bot(settings: Settings, **changes: Any) -> Settings:
    """The hub on its own port with no Rasa (even if the session started one)."""
    return replace(
        settings,
        http_port=free_port(),
        rasa_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        rasa_timeout=1.0,
        **changes,
    )


async def test_widget_waits_out_retry_after_then_delivers(
    settings: Settings, browser: Browser
) -> None:
    # One new conversation per 2.5 s for the address: retry_after is 1-3 s.
    limited = without_bot(settings, new_conversations_per_address=1, new_conversations_window=2.5)
    app = create_app(limited)
    seen: list[tuple[str, float, int]] = []  # (path, arrival, retry_after answered)

    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/ws/chat"):
            return await handler(request)
        arrived = time.monotonic()
        if request.path == "/ws/chat":
            seen.append((request.path, arrived, 0))  # a socket lives on inside the handler
            return await handler(request)
        response = await handler(request)
        assert isinstance(response, web.Response) and response.text is not None
        seen.append((request.path, arrived, int(json.loads(response.text)["retry_after"])))
        return response

    app.middlewares.append(observe)
    server = TestServer(app, host="127.0.0.1", port=limited.http_port)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    other = ChatClient(base, "en")
    try:
        page = await browser.new_page(locale="en-US")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sockets: list[WebSocket] = []
        page.on("websocket", lambda ws: sockets.append(ws))
        await other.connect()  # this address's one new conversation of the window
        seen.clear()
        await page.goto(base + "/")

        busy = page.get_by_test_id("hotline-busy")
        countdown = page.get_by_test_id("hotline-busy-countdown")
        status = page.get_by_test_id("hotline-status")
        await expect(busy).to_contain_text("busy right now")
        await expect(countdown).to_have_text(re.compile(r"^[1-3] s$"))
        await expect(status).to_have_attribute("data-state", "waiting")
        await expect(status).not_to_contain_text("Reconnecting")
        first = await countdown.inner_text()
        await expect(countdown).not_to_have_text(first)  # it counts down, second by second

        # Typed while waiting; "back online" and "visible again" must not cut the wait.
        await page.get_by_test_id("hotline-input").fill(TYPED)
        await page.get_by_test_id("hotline-send").click()
        await page.evaluate(
            "window.dispatchEvent(new Event('online'));"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        mine = page.locator("[data-from=citizen]")
        await expect(mine).to_have_attribute("data-state", "pending")
        assert len(sockets) == 1

        # After the wait: connected, the notice gone, the message delivered once.
        await expect(mine).to_have_attribute("data-state", "sent", timeout=10_000)
        await expect(busy).to_have_count(0)
        await expect(status).to_have_attribute("data-state", "online")
        await expect(mine).to_have_text(TYPED)  # shown as text, not markup
        assert await page.evaluate("localStorage.getItem('hotline.outbox')") is None
        await page.close()  # close the socket first, or the hub waits for it on shutdown

        upgrades = [at for path, at, _ in seen if path == "/ws/chat"]
        probes = [(at, wait) for path, at, wait in seen if path == "/ws/chat/limit"]
        assert len(upgrades) == 2 and len(sockets) == 2, seen
        [(asked, retry_after)] = probes
        assert 1 <= retry_after <= 3
        assert upgrades[0] < asked and upgrades[1] - asked >= retry_after, seen
        rows = await stored(limited, TYPED)
        assert len(rows) == 1 and rows[0][1] == "citizen"
        assert rows[0][0] != other.conversation_id
        assert errors == []
    finally:
        await other.close()
        await server.close()


async def test_a_refused_hello_frame_is_waited_out_in_mandarin(
    settings: Settings, browser: Browser
) -> None:
    """The in-band refusal: a hello answered with ``too_many_conversations`` on an open
    socket. The first socket is played by the test; the next one reaches the real hub."""
    hub_settings = without_bot(settings)
    server = TestServer(create_app(hub_settings), host="127.0.0.1", port=hub_settings.http_port)
    await server.start_server()
    opened: list[float] = []
    refused_at: list[float] = []

    def refuse(ws: WebSocketRoute, message: str | bytes) -> None:
        if json.loads(message)["type"] == "hello":
            refused_at.append(time.monotonic())
            hostile = "<img src=x onerror=window.__pwned=1>"
            ws.send(
                json.dumps(
                    {
                        "type": "error",
                        "code": "too_many_conversations",
                        "message": hostile,
                        "retry_after": 2,
                    }
                )
            )

    def route(ws: WebSocketRoute) -> None:
        opened.append(time.monotonic())
        if len(opened) == 1:
            ws.on_message(lambda message: refuse(ws, message))
        else:
            ws.connect_to_server()  # frames flow both ways untouched

    try:
        page = await browser.new_page(locale="zh-CN")
        await page.route_web_socket("**/ws/chat", route)
        await page.goto(str(server.make_url("/")))
        busy = page.get_by_test_id("hotline-busy")
        await expect(busy).to_contain_text("当前在线咨询人数较多")
        await expect(page.get_by_test_id("hotline-busy-countdown")).to_have_text(
            re.compile(r"^[12] 秒$")
        )
        await expect(page.get_by_test_id("hotline-status")).to_have_attribute(
            "data-state", "waiting"
        )
        await page.get_by_test_id("hotline-input").fill("你好")
        await page.get_by_test_id("hotline-send").click()
        mine = page.locator("[data-from=citizen]")
        await expect(mine).to_have_attribute("data-state", "sent", timeout=10_000)
        await expect(busy).to_have_count(0)
        assert len(opened) == 2 and opened[1] - refused_at[0] >= 2
        assert await page.evaluate("window.__pwned") is None
        await page.close()
    finally:
        await server.close()
