"""The agent console with an email citizen, in Chromium, through the real mail system.

Rasa is down, so the letter goes to a person. The email conversation's channel carries
attachments: the console lists the citizen's files in their own box, each a download
through the agent's session (audited), and the agent's reply from the composer reaches
the citizen's mailbox in the same thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect
from sqlalchemy import select

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AuditLog
from hotline.web import create_app
from tests.channels.mail_fixtures import PASSWORD as MAIL_PASSWORD
from tests.channels.mail_fixtures import email_settings, new_address
from tests.channels.test_sms_console import sign_in
from tests.conftest import free_port
from tests.mail import CitizenMailbox, MailSystemThread, letter, send_mail
from tests.staff import StaffClient
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_handoff import PASSWORD

pytestmark = [pytest.mark.browser]

ADMIN_PASSWORD = "admin-password-for-tests"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
REPLY = "您好，我是值班检察官，材料已收到，我们会尽快核实。"


@pytest.fixture
async def mail_hub(
    settings: Settings, mail_system: MailSystemThread
) -> AsyncIterator[tuple[TestServer, Settings]]:
    configured = replace(
        email_settings(settings, mail_system),
        admin_password=ADMIN_PASSWORD,
        acd_tick_seconds=0.2,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
    )
    server = TestServer(create_app(configured), host="127.0.0.1", port=configured.http_port)
    await server.start_server()
    yield server, configured
    await server.close()


async def test_the_agent_sees_the_files_and_replies_into_the_thread(
    mail_hub: tuple[TestServer, Settings],
    mail_system: MailSystemThread,
    browser: Browser,  # noqa: F811
) -> None:
    server, configured = mail_hub
    base = str(server.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    await admin.post(
        "/api/users",
        {"username": "mail.console", "password": PASSWORD, "role": "agent"},
        expect=201,
    )
    await admin.close()

    context = await browser.new_context(locale="zh-CN", accept_downloads=True)
    console = await context.new_page()
    errors: list[str] = []
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(console, base, "mail.console")
    await console.get_by_test_id("status-select").select_option("ready")
    await expect(console.get_by_test_id("status-current")).to_have_attribute("data-state", "ready")

    section = configured.channel_sections["email"]
    citizen = new_address("citizen")
    box = await CitizenMailbox(mail_system.imap_port, citizen, MAIL_PASSWORD).connect()
    sent = letter(
        citizen,
        section["address"],
        "补充材料",
        "请工作人员查看附件中的照片。",
        attachments=[("<img src=x onerror=alert(1)>.png", PNG, "image/png")],
    )
    await send_mail(mail_system.smtp_port, sent)

    offer = console.get_by_test_id("offer")
    await expect(offer).to_be_visible(timeout=30_000)
    await expect(offer).to_have_attribute("data-channel", "email")
    await expect(offer).to_have_attribute("data-media", "deferred")
    await expect(offer.get_by_test_id("offer-channel")).to_have_text("电子邮件")
    conversation_id = await offer.get_attribute("data-conversation-id")
    await offer.get_by_test_id("offer-accept").click()

    panel = console.locator(f'[data-testid="conv-panel"][data-conversation-id="{conversation_id}"]')
    await expect(panel).to_be_visible()
    files = panel.get_by_test_id("attachments-box")
    await expect(files).to_be_visible()
    await expect(files.locator("h4")).to_have_text("附件（访问将被审计）")
    link = files.get_by_test_id("attachment-link")
    await expect(link).to_have_count(1)
    await expect(link).to_have_text("<img src=x onerror=alert(1)>.png")  # text, not markup
    await expect(files.get_by_test_id("attachment")).to_contain_text("image/png")
    async with console.expect_download() as download_info:
        await link.click()
    download = await download_info.value
    path = await download.path()
    assert path is not None and path.read_bytes() == PNG

    await panel.get_by_test_id("reply-input").fill(REPLY)
    await panel.get_by_test_id("reply-send").click()
    answer = await box.next_message(30, lambda m: REPLY in m.get_content())
    assert answer["In-Reply-To"].strip() == str(sent["Message-ID"]).strip()
    assert str(answer["Subject"]) == "Re: 补充材料"

    engine = make_engine(configured.database_url)
    async with sessionmaker(engine)() as session:
        actions = list((await session.execute(select(AuditLog.action))).scalars())
    await engine.dispose()
    assert "attachment.list" in actions and "attachment.download" in actions
    assert errors == []
    await box.close()
    await context.close()
