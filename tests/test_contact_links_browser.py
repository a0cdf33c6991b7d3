"""The console's contact panel shows a citizen's linked contacts, and undoes a link.

Chromium, two staff contexts. A supervisor links two web chat contacts (the same
citizen in two browsers) through the API; the agent who takes the first conversation
sees the link (channel, how, by whom) and the other conversation in the history, and
undoes it with one click: the link and that history go, and the undo is audited. The
supervisor then links them again from the panel's own form, in English. Rasa is down
here, so a citizen's message goes straight to a person.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from hotline.appkeys import SESSIONS
from hotline.config import Settings
from hotline.store.models import AuditLog, Contact, Conversation
from tests.chat import ChatClient
from tests.staff import StaffClient
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_contact_links import base_of, down, serve
from tests.test_handoff import ADMIN_PASSWORD, PASSWORD

pytestmark = [pytest.mark.browser]


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[TestServer]:
    server = await serve(down(settings))
    yield server
    await server.close()


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(base + "/console/")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("status-select")).to_be_visible()


async def take(page: Page, chat: ChatClient) -> None:
    """Go ready, have the citizen ask for a person, accept the offer, take a break (so the
    next offer goes to someone else; offline would give the chat back to the queue)."""
    await page.get_by_test_id("status-select").select_option("ready")
    await expect(page.get_by_test_id("status-current")).to_have_attribute("data-state", "ready")
    await chat.say("我要找人工")
    offer = page.locator(f'[data-testid="offer"][data-conversation-id="{chat.conversation_id}"]')
    await expect(offer).to_be_visible(timeout=15_000)
    await offer.get_by_test_id("offer-accept").click()
    panel = page.locator(
        f'[data-testid="conv-panel"][data-conversation-id="{chat.conversation_id}"]'
    )
    await expect(panel.get_by_test_id("conv-state")).to_have_attribute(
        "data-state", "assigned", timeout=15_000
    )
    await page.get_by_test_id("status-select").select_option("break")
    await expect(page.get_by_test_id("status-current")).to_have_attribute("data-state", "break")


async def contact_id(server: TestServer, conversation_id: str | None) -> str:
    async with server.app[SESSIONS]() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.contact_id


async def test_an_agent_sees_a_link_and_undoes_it_and_a_supervisor_links_again(
    hub: TestServer,
    browser: Browser,  # noqa: F811
) -> None:
    base = base_of(hub)
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    for name, role in (("wang", "agent"), ("boss", "supervisor")):
        await admin.post(
            "/api/users", {"username": name, "password": PASSWORD, "role": role}, expect=201
        )
    boss_api = await StaffClient(base).login("boss", PASSWORD)
    first, second = ChatClient(base), ChatClient(base)
    await first.connect()
    await second.connect()
    one = await contact_id(hub, first.conversation_id)
    two = await contact_id(hub, second.conversation_id)
    await boss_api.post(
        f"/api/contacts/{one}/links", {"conversation_id": second.conversation_id}, expect=201
    )

    errors: list[str] = []
    agent_ctx = await browser.new_context(locale="zh-CN")
    console = await agent_ctx.new_page()
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(console, base, "wang")
    await take(console, first)

    panel = console.locator(
        f'[data-testid="conv-panel"][data-conversation-id="{first.conversation_id}"]'
    )
    box = panel.get_by_test_id("contact-box")
    link = box.get_by_test_id("contact-link")
    await expect(link).to_have_count(1)
    await expect(link).to_have_attribute("data-contact-id", two)
    await expect(link).to_have_attribute("data-how", "supervisor")
    await expect(link).to_contain_text("网页在线 · 班长关联")
    await expect(link).to_contain_text("操作人 boss")
    previous = box.get_by_test_id("history-previous")
    await expect(previous).to_have_attribute("data-conversation-id", second.conversation_id or "")
    await expect(previous).to_contain_text("网页在线")
    await expect(box.get_by_test_id("contact-link-form")).to_have_count(0)  # agents: no form
    await console.get_by_test_id("lang-toggle").click()
    await expect(link).to_contain_text("Web chat · linked by a supervisor")
    await expect(link.get_by_test_id("contact-unlink")).to_have_text("Undo link")
    await console.get_by_test_id("lang-toggle").click()

    await link.get_by_test_id("contact-unlink").click()
    await expect(link).to_have_count(0)
    await expect(previous).to_have_count(0)
    await expect(box.get_by_test_id("contact-link-error")).to_be_hidden()
    async with hub.app[SESSIONS]() as session:
        undone = list(
            (
                await session.execute(
                    select(AuditLog.actor, AuditLog.record_id).where(
                        AuditLog.action == "contact.unlink"
                    )
                )
            ).all()
        )
        assert undone == [("wang", two)]
        assert (await session.get(Contact, one)).person_id is None  # type: ignore[union-attr]

    # The supervisor takes the second conversation and links it back from the panel.
    boss_ctx = await browser.new_context(locale="en-US")
    sup = await boss_ctx.new_page()
    sup.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(sup, base, "boss")
    await sup.get_by_test_id("lang-toggle").click()  # the console starts in Mandarin
    await take(sup, second)
    panel = sup.locator(
        f'[data-testid="conv-panel"][data-conversation-id="{second.conversation_id}"]'
    )
    box = panel.get_by_test_id("contact-box")
    await expect(box.get_by_test_id("contact-link")).to_have_count(0)
    form = box.get_by_test_id("contact-link-form")
    await form.get_by_test_id("contact-link-submit").click()  # empty: said, nothing sent
    await expect(box.get_by_test_id("contact-link-error")).to_have_text(
        "Enter the other conversation's id."
    )
    await form.get_by_test_id("contact-link-conversation").fill("<b>no-such</b>")
    await form.get_by_test_id("contact-link-submit").click()
    error = box.get_by_test_id("contact-link-error")
    await expect(error).to_contain_text("conversation_id has an invalid format")
    assert await error.locator("b").count() == 0  # text, never markup
    await form.get_by_test_id("contact-link-conversation").fill(first.conversation_id or "")
    await form.get_by_test_id("contact-link-submit").click()
    link = box.get_by_test_id("contact-link")
    await expect(link).to_have_count(1)
    await expect(link).to_have_attribute("data-contact-id", one)
    await expect(link).to_contain_text("by boss")
    await expect(error).to_be_hidden()
    await expect(box.get_by_test_id("history-previous")).to_have_attribute(
        "data-conversation-id", first.conversation_id or ""
    )
    assert errors == []
    for client in (admin, boss_api):
        await client.close()
    for chat in (first, second):
        await chat.close()
    await agent_ctx.close()
    await boss_ctx.close()
