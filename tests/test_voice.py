"""Real calls into the IVR: SIPp dials 12309 through the trunk of a real Asterisk 22.

Asterisk runs once per session from the provisioned Debian sid root (built on first
use by ``asterisk/provision.sh``). Keys are sent as SIP INFO; what the IVR did is read
from the call's CDR (``call_record``), which logs every step with a timestamp.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hotline.appkeys import HUB, VOICE
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Blacklist, Contact, TicketKind
from hotline.tickets import NewCase
from tests.audio_pcap import speak, write_rtp_pcap
from tests.voice import call, hub, keyed, record_of, steps

__all__ = ["hub"]  # a fixture, used by name

pytestmark = pytest.mark.voice


async def new_case(hub: TestServer) -> NewCase:
    """A report filed on the web, to be checked by phone."""
    return await hub.app[HUB].tickets.create(
        kind=TicketKind.REPORT,
        fields={"details": "测试案件"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )


async def test_case_status_by_keys_right_then_wrong_pin(
    hub: TestServer, asterisk: Settings, db_url: str
) -> None:
    case = await new_case(hub)
    right = [
        (2500, "1"),  # Mandarin (barging into the welcome)
        (1500, "3"),  # case status
        *keyed(*case.case_code, "#"),
        *keyed(*case.pin, "#"),
        (6000, "9"),  # stay to hear the answer; 9 is no menu choice
    ]
    await call(asterisk, "13800000001", right)
    record = await record_of(db_url, "13800000001")
    path = steps(record)
    assert path[:4] == [
        ("answered", None),
        ("language", "zh"),
        ("menu", "case_status"),
        ("case_status", "found"),
    ]
    assert record.answered_at is not None and record.dialled == asterisk.ivr_number
    assert record.language == "zh"
    assert case.pin not in str(record.ivr_path) and case.case_code not in str(record.ivr_path)
    timestamps = [s["at"] for s in record.ivr_path]
    assert timestamps == sorted(timestamps)

    wrong_pin = "000000" if case.pin != "000000" else "111111"
    wrong = [
        (2500, "2"),  # English
        (1500, "3"),
        *keyed(*case.case_code, "#"),
        *keyed(*wrong_pin, "#"),
        (5000, "9"),
    ]
    await call(asterisk, "13800000002", wrong)
    record = await record_of(db_url, "13800000002")
    assert steps(record)[:4] == [
        ("answered", None),
        ("language", "en"),
        ("menu", "case_status"),
        ("case_status", "no_match"),
    ]


async def test_healthz_reports_asterisk(hub: TestServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(hub.make_url("/healthz")) as resp:
        body = await resp.json()
    assert body["components"]["asterisk"]["status"] == "ok"
    assert body["components"]["asterisk"]["detail"].startswith("22.")
    speech = body["components"]["speech"]["detail"]
    assert speech == "zh: keys only (no model); en: pocketsphinx", speech


async def test_blacklisted_caller_is_refused_and_logged(
    hub: TestServer, asterisk: Settings, db_url: str
) -> None:
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        contact = Contact(channel="voice", external_id="13900000009")
        session.add(contact)
        await session.flush()
        session.add(Blacklist(contact_id=contact.id, reason="abusive calls", created_by="test"))
        await session.commit()
    await engine.dispose()
    await call(asterisk, "13900000009", [], hangs_up=False)
    record = await record_of(db_url, "13900000009")
    assert steps(record) == [("answered", None), ("refused", "blacklisted")]
    assert record.disposition == "refused"


async def test_spoken_menu_choice_steers_the_ivr(
    hub: TestServer, asterisk: Settings, db_url: str, tmp_path: Path
) -> None:
    """espeak-ng's "case status" streamed into the call; pocketsphinx hears it at the menu."""
    case = await new_case(hub)
    pcap = tmp_path / "case-status.pcap"
    write_rtp_pcap(speak("case status", tmp_path / "case-status.wav"), pcap, tail_silence=1.0)
    steps_: list[tuple[int, str | Path]] = [
        (2500, "2"),  # English
        (3000, pcap),  # said over the menu prompt (barge-in by speech)
        (5000, case.case_code[0]),
        *keyed(*case.case_code[1:], "#"),
        *keyed(*case.pin, "#"),
        (6000, "9"),
    ]
    await call(asterisk, "13800000003", steps_)
    record = await record_of(db_url, "13800000003")
    assert steps(record)[:5] == [
        ("answered", None),
        ("language", "en"),
        ("speech", "case status"),
        ("menu", "case_status"),
        ("case_status", "found"),
    ]


async def test_call_survives_an_ari_events_reconnect(
    hub: TestServer, asterisk: Settings, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The events socket drops mid-call; the IVR reconnects, reconciles and carries on."""
    case = await new_case(hub)
    keys = [
        (2500, "1"),
        (4000, "3"),  # well after the socket came back: keys sent in the gap are lost
        *keyed(*case.case_code, "#"),
        *keyed(*case.pin, "#"),
        (6000, "9"),
    ]
    caplog.set_level("INFO", logger="voice_ivr.ivr")
    caller = asyncio.create_task(call(asterisk, "13800000004", keys))
    voice = hub.app[VOICE]
    await asyncio.sleep(3.5)  # in the menu prompt
    await voice.ari.drop_events()
    await asyncio.wait_for(caller, 90)
    record = await record_of(db_url, "13800000004")
    assert steps(record)[:4] == [
        ("answered", None),
        ("language", "zh"),
        ("menu", "case_status"),
        ("case_status", "found"),
    ]
    assert any(r.getMessage() == "ari reconciled" for r in caplog.records)
