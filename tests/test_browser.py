"""A citizen files a report in Mandarin through the real widget in Debian's Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from hotline.config import Settings
from hotline.web import create_app
from tests.conftest import free_port

pytestmark = [pytest.mark.rasa, pytest.mark.browser, pytest.mark.usefixtures("rasa_stack")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


async def send(page: Page, text: str) -> None:
    """Type like a citizen, then wait until the bot has answered this message."""
    bot = page.get_by_test_id("hotline-msg").and_(page.locator("[data-from=bot]"))
    before = await bot.count()
    await page.get_by_test_id("hotline-input").fill(text)
    await page.get_by_test_id("hotline-send").click()
    await expect(bot).not_to_have_count(before, timeout=20_000)
    await expect(page.locator("[data-from=citizen][data-state=pending]")).to_have_count(0)


async def test_citizen_files_a_report_in_mandarin(hub_server: TestServer, browser: Browser) -> None:
    page = await browser.new_page(locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(hub_server.make_url("/")))
    await expect(page.get_by_test_id("hotline-panel")).to_be_visible()
    greeting = page.get_by_test_id("hotline-msg").and_(page.locator("[data-from=bot]"))
    await expect(greeting).to_have_count(1)  # the bot opens the conversation
    await expect(greeting).to_contain_text("12309")

    await send(page, "我要举报镇政府的干部挪用扶贫资金")
    await expect(page.get_by_test_id("hotline-msg").last).to_contain_text("被举报人")
    answers = (
        "吴十",
        "东风镇人民政府",
        "副镇长",
        "他把上级下拨的扶贫资金三十万元转到亲戚的公司账户",
        "今年五月",
        "跳过",
        "有银行流水",
    )
    for answer in answers:
        await send(page, answer)
    # Choose anonymity with the button, the way a citizen would.
    await page.get_by_test_id("hotline-button").filter(has_text="匿名").click()
    await expect(page.get_by_test_id("hotline-msg").last).to_contain_text("请核对", timeout=20_000)
    await expect(page.get_by_test_id("hotline-msg").last).to_contain_text("东风镇人民政府")
    await send(page, "确认")
    last = page.get_by_test_id("hotline-msg").last
    await expect(last).to_contain_text("案件编号")
    text = await last.inner_text()
    assert re.search(r"案件编号：\d{12}", text) and re.search(r"查询密码：\d{6}", text)

    # A reload resumes the same conversation with its history.
    await page.reload()
    case = page.get_by_test_id("hotline-msg").filter(has_text=re.compile(r"案件编号：\d{12}"))
    await expect(case).to_have_count(1)
    await expect(case).to_contain_text("查询密码：******")  # the PIN was shown once only
    assert errors == []


async def test_chat_text_is_escaped(hub_server: TestServer, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(str(hub_server.make_url("/")))
    bot = page.get_by_test_id("hotline-msg").and_(page.locator("[data-from=bot]"))
    await expect(bot).to_have_count(1)
    await send(page, "<img src=x onerror=window.__pwned=1> 你好")
    mine = page.get_by_test_id("hotline-msg").and_(page.locator("[data-from=citizen]")).last
    await expect(mine).to_contain_text("<img src=x onerror=window.__pwned=1>")
    assert await page.evaluate("window.__pwned") is None


async def test_widget_embeds_in_another_site(settings: Settings, browser: Browser) -> None:
    """One <script> tag on a partner site; that site's origin is allowed explicitly."""
    site_port = free_port()
    site_origin = f"http://127.0.0.1:{site_port}"
    hub_settings = replace(settings, allowed_origins=(site_origin,))
    hub = TestServer(create_app(hub_settings), host="127.0.0.1", port=hub_settings.http_port)
    await hub.start_server()
    page_html = (
        "<!doctype html><html><head><style>div{display:none!important}</style></head><body>"
        "<h1>Partner site</h1>"
        f'<script src="http://127.0.0.1:{hub_settings.http_port}/widget.js" data-lang="en" '
        'data-open="true"></script></body></html>'
    )

    async def partner_page(_request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    site = web.Application()
    site.router.add_get("/", partner_page)
    site_server = TestServer(site, host="127.0.0.1", port=site_port)
    await site_server.start_server()
    try:
        page = await browser.new_page()
        await page.goto(site_origin + "/")
        await expect(page.get_by_test_id("hotline-panel")).to_be_visible()
        bot = page.get_by_test_id("hotline-msg").and_(page.locator("[data-from=bot]"))
        await expect(bot).to_have_count(1)
        await send(page, "hello")
        await expect(page.get_by_test_id("hotline-msg").last).to_contain_text("12309")
        await page.close()  # close the socket first, or the hub waits for it on shutdown
    finally:
        await site_server.close()
        await hub.close()
