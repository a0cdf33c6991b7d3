"""Shared pieces of the voice tests: the session's Asterisk, a hub on it, SIPp callers.

Asterisk runs once per session from the provisioned root (``HOTLINE_TEST_ASTERISK_ROOT``
overrides it, so two suites can run side by side from two copies of the root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.config import PROJECT_ROOT, Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import CallRecord
from hotline.web import create_app
from tests.conftest import free_port
from voice_ivr.asterisk import EmbeddedAsterisk

SIPP = Path(__file__).parent / "sipp"


@pytest.fixture(scope="session")
def asterisk(base_settings: Settings) -> Iterator[Settings]:
    if shutil.which("sipp") is None:
        raise RuntimeError("SIPp is missing: apt-get install sip-tester (make test does)")
    settings = replace(
        base_settings,
        asterisk_root=Path(
            os.environ.get("HOTLINE_TEST_ASTERISK_ROOT", PROJECT_ROOT / "var" / "asterisk-root")
        ),
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


# After a pause (ms): a key, a pcap of speech to play, or "" (only the pause: e.g. the
# caller listening a while before hanging up).
Step = tuple[int, "str | Path"]

_AUDIO = """  <pause milliseconds="PAUSE"/>
  <nop><action><exec play_pcap_audio="PCAP"/></action></nop>
"""


def scenario(caller: str, keys: list[Step], password: str, hangs_up: bool) -> Path:
    """The caller scenario: one SIP INFO per key or a pcap played, each after its pause."""
    key_block = (SIPP / "key_info.xml").read_text()
    blocks = [
        _AUDIO.replace("PAUSE", str(pause)).replace("PCAP", str(key))
        if isinstance(key, Path)
        else f'  <pause milliseconds="{pause}"/>\n'
        if key == ""
        else key_block.replace("PAUSE", str(pause)).replace("KEY", key).replace("SEQ", str(3 + i))
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


async def call(settings: Settings, caller: str, keys: list[Step], *, hangs_up: bool = True) -> None:
    path = scenario(caller, keys, settings.sip_trunk_password, hangs_up)
    await sipp(path, f"127.0.0.1:{settings.sip_port}", "-s", settings.ivr_number)


async def sipp(path: Path, *args: str, port: int | None = None, timeout: int = 90) -> None:
    """Run one SIPp scenario to its end (one call); fails the test if SIPp reports one."""
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        *args,
        "-sf",
        str(path),
        "-i",
        "127.0.0.1",
        "-p",
        str(port or free_udp_port()),
        "-mp",
        str(free_udp_port()),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{timeout}s",
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


def free_udp_port() -> int:
    """A port free for UDP too (``free_port`` checks TCP; SIPp phones hold UDP ports)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def render(name: str, **values: str) -> Path:
    """A scenario file from ``tests/sipp`` with its placeholders filled in."""
    text = (SIPP / name).read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    path = Path(tempfile.mkdtemp(prefix="sipp-")) / name
    path.write_text(text)
    return path


async def record_of(db_url: str, caller: str) -> CallRecord:
    """The caller's finished CDR (the IVR closes it right after the BYE)."""
    engine = make_engine(db_url)
    try:
        for _ in range(100):
            async with sessionmaker(engine)() as session:
                found: CallRecord | None = (
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
