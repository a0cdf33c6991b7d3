"""Real calls into the IVR: SIPp dials 12309 through the trunk of a real Asterisk 22.

Asterisk runs once per session from the provisioned Debian sid root (built on first
use by ``asterisk/provision.sh``). Keys are sent as SIP INFO; what the IVR did is read
from the call's CDR (``call_record``), which logs every step with a timestamp.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import HUB
from hotline.config import PROJECT_ROOT, Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Blacklist, CallRecord, Contact, TicketKind
from hotline.web import create_app
from tests.conftest import free_port
from voice_ivr.asterisk import EmbeddedAsterisk

pytestmark = pytest.mark.voice

SIPP = Path(__file__).parent / "sipp"


@pytest.fixture(scope="session")
def asterisk(base_settings: Settings) -> Iterator[Settings]:
    if shutil.which("sipp") is None:
        raise RuntimeError("SIPp is missing: apt-get install sip-tester (make test does)")
    settings = replace(
        base_settings,
        asterisk_root=PROJECT_ROOT / "var" / "asterisk-root",
        ari_url=f"http://127.0.0.1:{free_port()}",
        ari_password="ari-test-password-1234",
        sip_port=free_port(),
        sip_trunk_password="trunk-test-password-1234",
        rtp_start=20000,
        voice_enabled=True,
    )
    (settings.var_dir / "log").mkdir(exist_ok=True)
    box = EmbeddedAsterisk(settings)
    box.provision()
    asyncio.run(box.start())
    yield settings
    box.stop()


@pytest.fixture
async def hub(asterisk: Settings, db_url: str) -> AsyncIterator[TestServer]:
    settings = replace(asterisk, database_url=db_url)
    server = TestServer(create_app(settings), host="127.0.0.1", port=free_port())
    await server.start_server()
    yield server
    await server.close()


def scenario(caller: str, keys: list[tuple[int, str]], password: str, hangs_up: bool) -> Path:
    """The caller scenario with one SIP INFO per key, each after its pause (ms)."""
    key_block = (SIPP / "key_info.xml").read_text()
    blocks = [
        key_block.replace("PAUSE", str(pause)).replace("KEY", key).replace("SEQ", str(3 + i))
        for i, (pause, key) in enumerate(keys)
    ]
    text = (SIPP / "caller_dtmf_info.xml").read_text()
    ending = (SIPP / ("caller_hangs_up.xml" if hangs_up else "hung_up_on.xml")).read_text()
    text = text.replace("KEYS", "".join(blocks)).replace("ENDING", ending)
    text = text.replace("CALLER", caller)
    text = text.replace("TRUNK_PASSWORD", password)
    path = Path(tempfile.mkdtemp(prefix="sipp-")) / "call.xml"
    path.write_text(text)
    return path


async def call(
    settings: Settings, caller: str, keys: list[tuple[int, str]], *, hangs_up: bool = True
) -> None:
    path = scenario(caller, keys, settings.sip_trunk_password, hangs_up)
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{settings.sip_port}",
        "-sf",
        str(path),
        "-s",
        settings.ivr_number,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "90s",
        "-trace_err",
        "-error_file",
        str(path.with_suffix(".err")),
        cwd=path.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    errors = path.with_suffix(".err")
    detail = errors.read_text()[-2000:] if errors.exists() else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {err.decode()[-500:]} {detail}"


async def record_of(db_url: str, caller: str) -> CallRecord:
    """The caller's finished CDR (the IVR closes it right after the BYE)."""
    engine = make_engine(db_url)
    try:
        for _ in range(100):
            async with sessionmaker(engine)() as session:
                found = (
                    await session.execute(select(CallRecord).where(CallRecord.caller == caller))
                ).scalar_one_or_none()
            if found is not None and found.ended_at is not None:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"no finished call record for {caller}")
    finally:
        await engine.dispose()


def steps(record: CallRecord) -> list[tuple[str, Any]]:
    return [(s["step"], s.get("value")) for s in record.ivr_path]


def keyed(*digits: str, pause: int = 350) -> list[tuple[int, str]]:
    return [(pause, d) for d in digits]


async def test_case_status_by_keys_right_then_wrong_pin(
    hub: TestServer, asterisk: Settings, db_url: str
) -> None:
    case = await hub.app[HUB].tickets.create(
        kind=TicketKind.REPORT,
        fields={"details": "测试案件"},
        identity=None,
        conversation_id=None,
        channel="webchat",
        language="zh",
    )
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
