"""The agent console's voice features in Chromium, against the real hub and Asterisk.

An agent is issued a phone, the SIPp phone registers, and the agent signs in to the
console in the browser (the browser is their working session: status Ready is set there).
A SIPp caller dials 12309, picks English and asks for a person. The console shows the
ringing offer with the caller's number (no Accept button: the phone is the accept); the
SIPp phone answers, and the screen pop shows the caller, the IVR path, the state
"talking" and a running talk timer, with Hang up and Transfer. Hang up in the browser
ends the agent's leg (the phone gets a BYE); the caller skips the survey and gets a BYE
too. Then /console/calls lists the call and plays its recording in the page.

The caller's number carries markup: Asterisk decodes the %-escapes of the From user, so
the console receives ``<img src=x onerror=...>`` as the number and must show it as text.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, Response, expect
from sqlalchemy import select

from hotline.appkeys import VOICE
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Recording
from tests.staff import StaffClient
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_phones import (  # noqa: F401  (fixtures)
    PASSWORD,
    admin,
    agent_with_phone,
    hub,
    voices,
)
from tests.voice import call, record_of, steps

pytestmark = [pytest.mark.voice, pytest.mark.browser]

# What the caller's phone sends as its number (the user part of the From URI), and what
# Asterisk hands the hotline after decoding it.
CALLER_SENT = "%3Cimg%20src%3Dx%20onerror%3Dwindow.__pwned%3D1%3E13700000042"
CALLER = "<img src=x onerror=window.__pwned=1>13700000042"


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(base + "/console/")
    if await page.get_by_test_id("lang-toggle").inner_text() == "English":
        await page.get_by_test_id("lang-toggle").click()  # the page in English
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("logout")).to_be_visible()


async def sealed_recording(db_url: str, call_id: str) -> Recording:
    """The call's recording once sealed (that follows Asterisk's RecordingFinished)."""
    engine = make_engine(db_url)
    try:
        for _ in range(100):
            async with sessionmaker(engine)() as session:
                rec: Recording | None = (
                    await session.execute(select(Recording).where(Recording.call_id == call_id))
                ).scalar_one_or_none()
            if rec is not None and rec.file is not None:
                return rec
            await asyncio.sleep(0.1)
        raise AssertionError(f"no sealed recording for call {call_id}")
    finally:
        await engine.dispose()


async def test_agent_takes_a_call_in_the_console_hangs_up_and_plays_the_recording(
    hub: TestServer,  # noqa: F811
    admin: StaffClient,  # noqa: F811
    db_url: str,
    voices: dict[str, Path],  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    base = str(hub.make_url("")).rstrip("/")
    setup, phone = await agent_with_phone(hub, admin, "alice")
    alice_id = setup.user["id"]
    await setup.close()  # the browser is alice's working session from here on

    context = await browser.new_context(timezone_id="Asia/Shanghai")  # where agents are
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, base, "alice")

    phone_status = page.get_by_test_id("phone-status")
    await expect(phone_status).to_be_visible()
    await expect(phone_status).to_have_attribute("data-registered", "true")
    await expect(phone_status).to_have_text("Phone: registered")
    await page.get_by_test_id("status-select").select_option("ready")
    await expect(page.get_by_test_id("status-current")).to_have_attribute("data-state", "ready")

    phone.answer(voices["agent"], ring_ms=4000, hung_up=True)  # the agent says hello
    keys: list[tuple[int, str | Path]] = [
        (2500, "2"),  # English
        (1500, "0"),  # a person, please
        (6000, voices["caller"]),  # speaks once connected (or still on hold: no matter)
    ]
    caller = asyncio.create_task(
        call(hub.app[VOICE].settings, CALLER_SENT, keys, hangs_up=False)  # waits for a BYE
    )

    # The phone rings: the offer shows who calls, and has no Accept button.
    offer = page.get_by_test_id("offer")
    await expect(offer).to_be_visible(timeout=30_000)
    await expect(offer).to_have_attribute("data-channel", "voice")
    await expect(offer.get_by_test_id("offer-ringing")).to_be_visible()
    await expect(offer.get_by_test_id("offer-caller")).to_have_text(CALLER)
    await expect(offer.get_by_test_id("offer-accept")).to_be_hidden()
    await expect(offer.get_by_test_id("offer-reject")).to_be_visible()

    # The phone answers: the offer goes, the screen pop opens by itself.
    panel = page.get_by_test_id("conv-panel")
    await expect(panel).to_be_visible(timeout=20_000)
    await expect(offer).to_have_count(0)
    await expect(panel).to_have_attribute("data-channel", "voice")
    await expect(panel).to_have_attribute("data-mode", "live")
    box = panel.get_by_test_id("call-panel")
    await expect(box).to_be_visible()
    await expect(box.get_by_test_id("call-caller")).to_have_text(CALLER)
    dialled = hub.app[VOICE].settings.ivr_number
    await expect(box.get_by_test_id("call-dialled")).to_have_text(dialled)
    await expect(box.get_by_test_id("call-state")).to_have_attribute("data-state", "talking")
    await expect(box.get_by_test_id("call-state")).to_have_text("talking")
    ivr = box.get_by_test_id("ivr-step")
    await expect(ivr.and_(page.locator("[data-step=language]"))).to_contain_text(
        "Language: English"
    )
    await expect(ivr.and_(page.locator("[data-step=menu]"))).to_contain_text("Main menu: agent")
    await expect(ivr.and_(page.locator("[data-step=handoff]"))).to_contain_text(
        "To an agent: asked for"
    )
    await expect(ivr.and_(page.locator("[data-step=agent_answered]"))).to_have_count(1)
    await expect(box.get_by_test_id("call-waited")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    # No chat composer on a call; the talk timer runs.
    await expect(panel.get_by_test_id("reply-input")).to_be_hidden()
    timer = box.get_by_test_id("call-timer")
    await expect(timer).to_have_class(re.compile(r"\brunning\b"))
    await expect(timer).to_have_text(re.compile(r"^00:0[0-2]$"))
    await expect(timer).to_have_text(re.compile(r"^00:0[3-9]$"), timeout=10_000)

    # Transfer opens the transfer box (with an outside number for calls) and closes it.
    transfer = box.get_by_test_id("call-transfer")
    await expect(transfer).to_be_enabled()
    await transfer.click()
    await expect(transfer).to_have_attribute("aria-expanded", "true")
    await expect(panel.get_by_test_id("transfer-number")).to_be_visible()
    await transfer.click()
    await expect(transfer).to_have_attribute("aria-expanded", "false")
    await expect(panel.get_by_test_id("transfer-number")).to_be_hidden()

    # Hang up: the agent's leg ends, the caller goes on to the survey.
    hangup = box.get_by_test_id("call-hangup")
    await expect(hangup).to_be_enabled()
    await hangup.click()
    await expect(box.get_by_test_id("call-state")).to_have_attribute(
        "data-state", re.compile(r"^(survey|ended)$"), timeout=10_000
    )
    await expect(hangup).to_be_disabled()
    await expect(timer).not_to_have_class(re.compile(r"\brunning\b"))
    stopped = await timer.inner_text()
    await expect(panel.get_by_test_id("wrapup-notice")).to_be_visible(timeout=10_000)
    await phone.done()  # the phone got its BYE
    await asyncio.wait_for(caller, 90)  # the caller got theirs after the survey

    record = await record_of(db_url, CALLER)
    path = steps(record)
    for step in [
        ("language", "en"),
        ("menu", "agent"),
        ("agent_answered", None),
        ("agent_hung_up", None),
        ("survey_skipped", None),
    ]:
        assert step in path, (step, path)
    assert record.disposition == "completed" and record.agent_id == alice_id
    assert record.talk_seconds is not None and record.talk_seconds >= 3
    # The timer stopped at the hang-up and stayed there while the caller took the survey.
    minutes, seconds = (await timer.inner_text()).split(":")
    assert abs(int(minutes) * 60 + int(seconds) - record.talk_seconds) <= 1, (stopped, record)
    rec = await sealed_recording(db_url, record.id)

    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("img").count() == 0

    # The call records page: the call is listed and its recording plays in the page.
    await page.get_by_test_id("to-calls").click()
    await expect(page).to_have_url(re.compile(r"/console/calls$"))
    row = page.get_by_test_id("call-row").and_(page.locator(f'[data-call-id="{record.id}"]'))
    await expect(row).to_have_count(1, timeout=15_000)
    await expect(row.get_by_test_id("call-caller")).to_have_text(CALLER)
    await expect(row.get_by_test_id("call-agent")).to_have_text("alice")
    await expect(row.get_by_test_id("call-disposition")).to_have_attribute(
        "data-disposition", "completed"
    )
    await expect(row.get_by_test_id("call-ivr")).to_contain_text("Language: English")
    await expect(row.get_by_test_id("call-ivr")).to_contain_text("Agent hung up")
    play = row.get_by_test_id("call-play")
    await expect(play).to_have_attribute("data-recording-id", rec.id)

    def is_media(response: Response) -> bool:
        return (
            response.url.endswith(f"/api/recordings/{rec.id}/audio")
            and response.request.resource_type == "media"
        )

    async with page.expect_response(is_media, timeout=15_000) as info:
        await play.click()
    response = await info.value
    assert response.status in (200, 206), response.status
    assert (await response.header_value("content-type") or "").startswith("audio/wav")
    audio = page.get_by_test_id("calls-audio")
    await expect(audio).to_have_attribute("data-recording-id", rec.id)
    await page.wait_for_function(
        "el => el.readyState >= 1 && el.duration > 0",
        arg=await audio.element_handle(),
        timeout=15_000,
    )
    duration: Any = await audio.evaluate("el => el.duration")
    assert rec.duration_seconds is None or abs(duration - rec.duration_seconds) <= 2
    await expect(page.get_by_test_id("player-error")).to_be_hidden()
    await expect(page.get_by_test_id("player-label")).to_contain_text(CALLER)

    # The caller's markup was text on every screen, never run.
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("img").count() == 0
    assert errors == []
    await context.close()
