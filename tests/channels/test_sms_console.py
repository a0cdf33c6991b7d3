"""The agent console renders by capability: an SMS citizen in Chromium, through real Kannel.

Rasa is down (as in ``test_sms.py``'s ``down_hub``), so a citizen's first message
queues them for a person. The SMS conversation's channel is segmented and has delivery
reports: the reply box counts segments as the agent types (asked from the channel),
warns when a draft is longer than one message may be, and the agent's reply is marked
sent, then delivered once Kannel's report arrives. A web chat conversation, held at the
same time, shows none of that.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from channel_connectors.sms.kannel import segments, split
from tests.channels.kannel import Kannel, Phone, joined
from tests.channels.test_sms import ADMIN_PASSWORD, down_hub, down_settings  # noqa: F401
from tests.staff import StaffClient
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_handoff import PASSWORD, citizen

pytestmark = [pytest.mark.browser]

# 71 Chinese characters: UCS-2, one more than fits one SMS, so two concatenated parts.
REPLY = (
    "您好，我是值班检察官。您反映的情况我们已经记录，请您再补充提供被举报人的姓名、"
    "工作单位和具体的时间、地点，我们会在七个工作日内书面答复您。谢谢"
)
SHORT = "您好，我是值班检察官。"
TOO_LONG = "举" * 700  # more than the SMS channel's max_length (670): sent as two messages


def test_the_texts_are_what_the_test_says() -> None:
    assert len(REPLY) == 71 and (segments(REPLY).encoding, segments(REPLY).segments) == (
        "ucs2",
        2,
    )
    assert segments(SHORT).segments == 1
    pieces = split(TOO_LONG, 670)
    assert len(pieces) == 2 and sum(segments(p).segments for p in pieces) == 11


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(base + "/console/")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("status-select")).to_be_visible()


async def test_sms_reply_shows_segments_and_delivery_and_web_chat_does_not(
    down_hub: TestServer,  # noqa: F811
    kannel: Kannel,
    browser: Browser,  # noqa: F811
) -> None:
    base = str(down_hub.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    await admin.post(
        "/api/users", {"username": "sms.console", "password": PASSWORD, "role": "agent"}, expect=201
    )
    await admin.close()

    context = await browser.new_context(locale="zh-CN")
    console = await context.new_page()
    errors: list[str] = []
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(console, base, "sms.console")
    await console.get_by_test_id("status-select").select_option("ready")
    await expect(console.get_by_test_id("status-current")).to_have_attribute("data-state", "ready")

    async with Phone(down_hub, kannel) as phone:
        replies = await phone.say("我要找人工")
        assert "智能助手暂时无法回复" in joined(replies)  # Rasa is down: queued for a person

        # The offer names the channel (a label), and is accepted in the browser: SMS
        # threads are deferred work, not a call.
        offer = console.get_by_test_id("offer")
        await expect(offer).to_be_visible(timeout=15_000)
        await expect(offer).to_have_attribute("data-channel", "sms")
        await expect(offer).to_have_attribute("data-media", "deferred")
        await expect(offer.get_by_test_id("offer-channel")).to_have_text("短信")
        await expect(offer.get_by_test_id("offer-ringing")).to_be_hidden()
        sms_id = await offer.get_attribute("data-conversation-id")
        assert sms_id
        await offer.get_by_test_id("offer-accept").click()

        panel = console.locator(f'[data-testid="conv-panel"][data-conversation-id="{sms_id}"]')
        await expect(panel).to_be_visible()
        await expect(panel).to_have_attribute("data-channel", "sms")
        await expect(panel).to_have_attribute("data-media", "deferred")
        await expect(panel.get_by_test_id("conv-meta")).to_contain_text("短信")
        await expect(panel.get_by_test_id("call-panel")).to_be_hidden()
        transcript = panel.get_by_test_id("transcript")
        # What the hub already sent by SMS ("bot unavailable") is marked as well.
        system = transcript.locator("[data-from=system]").first
        await expect(system).to_have_attribute("data-delivery", "delivered", timeout=30_000)

        box = panel.get_by_test_id("reply-input")
        meter = panel.get_by_test_id("reply-segments")
        warning = panel.get_by_test_id("reply-too-long")
        await expect(meter).to_be_hidden()
        await box.fill(SHORT)
        await expect(meter).to_have_text("1 条短信 (UCS-2)")
        await box.fill(REPLY)
        await expect(meter).to_have_text("2 条短信 (UCS-2)")
        await expect(meter).to_have_attribute("data-segments", "2")
        await expect(meter).to_have_attribute("data-encoding", "ucs2")
        await expect(warning).to_be_hidden()
        await console.get_by_test_id("lang-toggle").click()
        await expect(meter).to_have_text("2 SMS (UCS-2)")
        await console.get_by_test_id("lang-toggle").click()
        await expect(meter).to_have_text("2 条短信 (UCS-2)")

        await box.fill(TOO_LONG)
        await expect(warning).to_be_visible()
        await expect(warning).to_contain_text("670")
        await expect(meter).to_have_text("11 条短信 (UCS-2)，分 2 次发出")
        await box.fill(REPLY)
        await expect(warning).to_be_hidden()
        await expect(meter).to_have_text("2 条短信 (UCS-2)")

        await panel.get_by_test_id("reply-send").click()
        await expect(meter).to_be_hidden()  # the box is empty again
        mine = transcript.locator("[data-from=agent]").filter(has_text=REPLY)
        await expect(mine).to_have_count(1)
        await expect(mine).to_have_attribute("data-delivery", "delivered", timeout=30_000)
        await expect(mine.get_by_test_id("msg-delivery")).to_have_text("已送达")
        while (await phone.receive())["text"] != REPLY:
            pass  # the citizen got it, as one concatenated SMS
        assert phone.received[-1]["parts"] == 2

        # A reply longer than one message goes out in two pieces (two delivery rows):
        # both belong to that one line, and the earlier line keeps its own.
        await box.fill(TOO_LONG)
        await panel.get_by_test_id("reply-send").click()
        long = transcript.locator("[data-from=agent]").filter(has_text=TOO_LONG)
        await expect(long).to_have_attribute("data-delivery", "delivered", timeout=30_000)
        await expect(long.get_by_test_id("msg-delivery")).to_have_attribute(
            "title", re.compile(r"^11 条短信")
        )
        await expect(mine.get_by_test_id("msg-delivery")).to_have_attribute(
            "title", re.compile(r"^2 条短信")
        )
        await expect(transcript.locator("[data-from=agent][data-delivery]")).to_have_count(2)

        agent = await StaffClient(base).login("sms.console", PASSWORD)
        shown = await agent.get(f"/api/channels/sms/conversations/{sms_id}/deliveries")
        assert [
            (d["segments"], d["dlr_state"]) for d in shown["deliveries"] if d["author"] == "agent"
        ] == [(2, "delivered"), (10, "delivered"), (1, "delivered")]
        detail = await agent.get(f"/api/conversations/{sms_id}")
        assert detail["conversation"]["capabilities"] == {
            "media": "deferred",
            "buttons": False,
            "attachments": False,
            "max_length": 670,
            "segmented": True,
            "delivery_reports": True,
            "address": "phone",
            "letters": False,
        }
        await agent.close()

    # A web chat conversation, held at the same time (SMS threads do not count against
    # the chat capacity): no segment count, no delivery marks.
    chat = await citizen(base)
    offer = console.get_by_test_id("offer")
    await expect(offer).to_be_visible(timeout=15_000)
    await expect(offer).to_have_attribute("data-channel", "webchat")
    await expect(offer).to_have_attribute("data-media", "chat")
    await offer.get_by_test_id("offer-accept").click()
    chat_panel = console.locator(
        f'[data-testid="conv-panel"][data-conversation-id="{chat.conversation_id}"]'
    )
    await expect(chat_panel).to_be_visible()
    await expect(chat_panel).to_have_attribute("data-media", "chat")
    await expect(chat_panel.get_by_test_id("conv-state")).to_have_attribute(
        "data-state", "assigned"
    )
    await chat_panel.get_by_test_id("reply-input").fill(REPLY + TOO_LONG)
    await asyncio.sleep(1.0)  # longer than the count's debounce
    await expect(chat_panel.get_by_test_id("reply-segments")).to_be_hidden()
    await expect(chat_panel.get_by_test_id("reply-too-long")).to_be_hidden()
    await chat_panel.get_by_test_id("reply-input").fill(SHORT)
    await chat_panel.get_by_test_id("reply-send").click()
    sent = chat_panel.get_by_test_id("transcript").locator("[data-from=agent]")
    await expect(sent).to_have_attribute("data-id", re.compile(r"^\d+$"))
    await expect(chat_panel.get_by_test_id("msg-delivery")).to_have_count(0)

    assert errors == []
    await chat.close()
    await console.close()
    await context.close()
