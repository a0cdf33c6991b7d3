"""Two Chromium contexts: a citizen in the widget and an agent in the console.

The citizen starts a report in Mandarin, then asks for a person. The agent signs in,
goes ready, accepts the offer, sees the transcript and what the bot collected, and
replies; the citizen sees the reply; the agent closes; the citizen rates. Markup typed
by the citizen stays text in the console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Conversation
from hotline.web import create_app
from tests.staff import StaffClient
from tests.test_browser import browser, send  # noqa: F401  (fixture)
from tests.test_handoff import ADMIN_PASSWORD, PASSWORD

pytestmark = [pytest.mark.rasa, pytest.mark.browser, pytest.mark.usefixtures("rasa_stack")]

XSS = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[tuple[str, Settings]]:
    hub_settings = replace(settings, admin_password=ADMIN_PASSWORD, acd_tick_seconds=0.3)
    server = TestServer(create_app(hub_settings), host="127.0.0.1", port=hub_settings.http_port)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), hub_settings
    await server.close()


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(base + "/console/")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("status-select")).to_be_visible()


async def test_citizen_asks_for_a_person_and_the_agent_serves_them(
    live: tuple[str, Settings],
    browser: Browser,  # noqa: F811
) -> None:
    base, settings = live
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    await admin.post(
        "/api/users", {"username": "li.na", "password": PASSWORD, "role": "agent"}, expect=201
    )
    await admin.close()

    agent_ctx = await browser.new_context(locale="zh-CN")
    citizen_ctx = await browser.new_context(locale="zh-CN")
    errors: list[str] = []
    console = await agent_ctx.new_page()
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(console, base, "li.na")
    await console.get_by_test_id("status-select").select_option("ready")
    await expect(console.get_by_test_id("status-current")).to_have_attribute("data-state", "ready")

    widget = await citizen_ctx.new_page()
    widget.on("pageerror", lambda exc: errors.append(str(exc)))
    await widget.goto(base + "/")
    bot = widget.get_by_test_id("hotline-msg").and_(widget.locator("[data-from=bot]"))
    await expect(bot).to_have_count(1)
    await send(widget, "我要举报县水利局的科长吃拿卡要")
    await send(widget, "孙八")
    await send(widget, "县水利局")
    await send(widget, f"{XSS} 我要转人工")
    await expect(widget.get_by_test_id("hotline-panel")).to_have_attribute(
        "data-conversation-state", "queued"
    )

    offer = console.get_by_test_id("offer")
    await expect(offer).to_be_visible(timeout=15_000)
    await offer.get_by_test_id("offer-accept").click()
    panel = console.get_by_test_id("conv-panel")
    await expect(panel).to_be_visible()
    transcript = panel.get_by_test_id("transcript")
    await expect(transcript).to_contain_text("我要举报县水利局的科长吃拿卡要")
    await expect(transcript).to_contain_text(XSS)  # shown as text, never run
    fields = panel.get_by_test_id("field")
    await expect(fields.and_(console.locator("[data-name=person]"))).to_contain_text("孙八")
    await expect(fields.and_(console.locator("[data-name=unit]"))).to_contain_text("县水利局")
    await expect(panel.get_by_test_id("intent")).to_contain_text("report_crime")

    await expect(widget.get_by_test_id("hotline-panel")).to_have_attribute(
        "data-conversation-state", "assigned"
    )
    await panel.get_by_test_id("reply-input").fill("您好，我是工作人员，请继续说明情况。")
    await panel.get_by_test_id("reply-send").click()
    agent_msg = widget.get_by_test_id("hotline-msg").and_(widget.locator("[data-from=agent]"))
    await expect(agent_msg).to_contain_text("请继续说明情况")

    await widget.get_by_test_id("hotline-input").fill("他每次都要两百元好处费")
    await widget.get_by_test_id("hotline-send").click()
    await expect(transcript).to_contain_text("他每次都要两百元好处费")

    await panel.get_by_test_id("close-disposition").select_option("info_given")
    await panel.get_by_test_id("close-submit").click()
    await expect(panel.get_by_test_id("wrapup-notice")).to_be_visible()
    rate = widget.get_by_test_id("hotline-button").filter(has_text="非常满意")
    await expect(rate).to_be_visible(timeout=15_000)
    await rate.click()
    await expect(widget.get_by_test_id("hotline-msg").last).to_contain_text("感谢您的评价")

    assert await console.evaluate("window.__pwned") is None
    assert await widget.evaluate("window.__pwned") is None
    assert errors == []
    engine = make_engine(settings.database_url)
    async with sessionmaker(engine)() as session:
        rated = (
            await session.execute(select(Conversation).where(Conversation.rating.is_not(None)))
        ).scalar_one()
    await engine.dispose()
    assert (rated.rating, rated.disposition, rated.state) == (1, "info_given", "closed")
    await widget.close()
    await console.close()
    await agent_ctx.close()
    await citizen_ctx.close()
