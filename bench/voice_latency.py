"""Spoken-turn latency on the wire: end of the caller's speech → first audio of the reply.

Needs root: the Asterisk root runs under chroot, SIPp replays speech from a raw socket,
and the RTP is captured from the loopback interface with an ``AF_PACKET`` socket.

Starts the embedded Asterisk from its own copy of the provisioned root (``--root``) and
the hub in this process, exactly as ``bench/voice_load.py`` does (:func:`voice_stack`),
then places ``--calls`` SIPp calls (one SIPp per call, ``--concurrency`` at a time;
sequential by default) after one untimed warm-up call (prompts synthesized and cached,
decoders created). Each call follows a :class:`Scenario`: keys as SIP INFO, then the
caller *says* a phrase (espeak-ng audio, replayed by SIPp from a pcap of PCMU RTP, see
``tests/audio_pcap.py``) and keeps sending quiet line noise while it listens, as a phone
does, then hangs up.

A scenario that talks to the bot (``needs_bot``) also gets the real Rasa server, with the
trained model (``--model``, default ``models/`` as ``make test`` trains it), and the action
server, started as ``hotline run`` and the tests' ``rasa_stack`` start them
(``hotline.supervisor.rasa_children``) on the ports and token of the hub's settings; their
logs go to the run's temporary directory. Rasa is not started for the other scenarios.

**What is measured.** A child process captures every UDP packet to or from Asterisk's
RTP port range on ``lo`` (kernel timestamps, ``SO_TIMESTAMPNS``; only the sending side
of each packet, ``PACKET_OUTGOING``), into a pcap. Each call is told apart by its SIPp
media port. Each RTP payload (PCMU) is decoded and a packet is *voiced* if its RMS is at
least ``--voice-rms`` (16-bit units). Then, per call:

* end of speech = the last voiced packet the caller sent;
* the reply = the first voiced packet Asterisk sent after that, provided Asterisk's
  stream was unvoiced for at least ``--min-gap`` before it. The prompt that was playing
  when the caller began to speak (barge-in stops it) must have stopped: if it was still
  talking, the first voiced packet after the speech may be the old prompt, so the call is
  flagged and left out rather than counted;
* **latency = reply − end of speech**; p50 and p95 (nearest rank) over the valid calls.

A call is valid only if SIPp completed it, its CDR (``call_record.ivr_path``) contains
the scenario's ``proof`` steps in order (e.g. ``("speech", "case status")`` then
``("menu", "case_status")``: the IVR really took the speech path), the wire shows the
speech and a reply after a gap, and, where the hub's timestamps are available, the reply
began after the hub asked Asterisk to play it. Flagged calls are listed with the reason.

**Components** (cheap, from inside the hub: this process wraps a few of its methods to
take ``time.time()`` stamps, the same clock as the capture's; see :class:`Probes`):

* ``detect``: end of speech on the wire → the recognizer ends the utterance
  (PocketSphinx's endpointer, or the listener's own end-of-silence fallback);
* ``recognize``: → the listener returns the final result (search end, thread hops);
* ``bot`` (bot scenarios only): → the hub ends the bot's turn, its replies delivered to
  the call (the CDR step, the hub storing the caller's words, Rasa: NLU, policies, the
  action server, then the hub's knowledge-base answer and the bot's message stored);
  ``rasa`` is the part spent in the hub's HTTP call to Rasa's REST webhook;
* ``ivr``: → the reply's ARI ``play`` request (CDR writes, the menu logic or the bot turn's
  grammar, TTS: a cache hit after the warm-up; ``synth`` is the ``say`` → ``play_file``
  part of it);
* ``asterisk``: → the reply's first voiced packet on the wire (ARI request, file open,
  frame pacing, and any quiet at the start of the prompt file: ``lead`` is the part
  after the reply's first RTP packet, when Asterisk was silent on the wire before it).

They add up to the latency (``bot`` is n/a outside bot scenarios). If a wrapped method is
renamed, that component is shown as n/a (and, for ``bot``, ``ivr`` then starts at the
recognized text and includes the bot); the wire latency does not depend on them. ``cdr``
(end of speech → the time of the scenario's ``cdr_step`` in the CDR: the ``speech`` step
of the menu, the ``bot_turn`` step of the bot) needs no wrapping at all.

**Adding a scenario**: append a :class:`Scenario` to :data:`SCENARIOS` (keys before, the
phrase, the CDR steps that prove the path; ``needs_bot`` if it reaches Rasa) and run with
``--scenario NAME``.

    cp -a var/asterisk-root /tmp/bench-root      # once: Asterisk renders its config into it
    .venv/bin/python bench/voice_latency.py [--calls 20] [--concurrency 1]
        [--scenario menu-case-status|legal-bot] [--root /tmp/bench-root] [--voice-rms 200]
        [--min-gap 0.3] [--line-noise 30] [--cold-tts] [--model PATH] [--keep-pcap] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import json
import logging
import os
import platform
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.voice_load import (  # noqa: E402
    TICKS,
    Stack,
    WarningCounter,
    check_ready,
    children_cpu,
    code_version,
    cpu_seconds,
    finished_records,
    loadavg,
    machine_busy,
    mark_completion,
    pct,
    sipp_calls,
    voice_stack,
)
from hotline.config import Settings  # noqa: E402
from hotline.store.models import CallRecord  # noqa: E402
from hotline.supervisor import Child, rasa_children, wait_ready  # noqa: E402
from hotline.training import model_path  # noqa: E402
from tests.audio_pcap import speak, write_rtp_pcap  # noqa: E402
from tests.voice import Step, free_udp_port, scenario  # noqa: E402

# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    """One spoken turn, as a caller takes it.

    ``keys``: (pause in ms, key) from the answer, each sent as SIP INFO. The caller then
    waits ``speak_after_ms`` and says ``phrase`` (espeak-ng ``voice``), with ``lead``
    seconds of line noise before the speech, and stays ``listen_ms`` after it (still
    sending line noise) before hanging up. ``proof``: steps of the CDR's ``ivr_path``
    that must appear in this order for the call to count; a value of ``None`` accepts
    any value of that step. ``cdr_step``: the CDR step (and value, ``None``: any) the IVR
    writes once it has heard the phrase (the ``cdr`` part). ``needs_bot``: the turn
    reaches the bot, so Rasa and the action server are started for the run.
    """

    name: str
    keys: tuple[tuple[int, str], ...]
    speak_after_ms: int
    phrase: str
    proof: tuple[tuple[str, str | None], ...]
    voice: str = "en-us"
    lead: float = 0.3
    listen_ms: int = 4000
    cdr_step: tuple[str, str | None] = ("speech", None)
    needs_bot: bool = False
    about: str = ""


SCENARIOS: Final[dict[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario(
            name="menu-case-status",
            keys=((2500, "2"),),  # English, barging into the welcome
            speak_after_ms=3000,  # over the menu prompt: barge-in by speech
            phrase="case status",
            proof=(("language", "en"), ("speech", "case status"), ("menu", "case_status")),
            about="main menu, said over the menu prompt; the reply asks for the case code",
        ),
        Scenario(
            name="legal-bot",
            keys=((2500, "2"), (1500, "4")),  # English, then legal questions
            speak_after_ms=3500,  # over "Please ask your legal question..." (barge-in)
            phrase="how do i file a complaint",  # one of the bot's English training phrases
            proof=(
                ("language", "en"),
                ("menu", "legal"),
                ("bot", "legal_consult"),
                ("bot_turn", "speech"),
            ),
            listen_ms=10000,  # to hear the answer begin (a cold Rasa takes over 1 s)
            cdr_step=("bot_turn", "speech"),
            needs_bot=True,
            about="the bot: the question is stored, Rasa answers from the knowledge base",
        ),
    )
}


# ------------------------------------------------------------------ capture (child)

ETH_P_ALL: Final = 0x0003
PACKET_OUTGOING: Final = 4
SO_RCVBUFFORCE: Final = 33
SO_TIMESTAMPNS: Final = 35  # also SCM_TIMESTAMPNS
PCAP_NS_MAGIC: Final = 0xA1B23C4D
LINKTYPE_ETHERNET: Final = 1


def capture(out: Path, low: int, high: int) -> None:
    """Write every UDP packet sent from or to ports ``low``..``high`` on ``lo`` into a
    nanosecond pcap at ``out`` until SIGTERM. Each packet once: as it was sent.

    Prints ``ready`` once the socket is bound (the parent waits for it).
    """
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    with out.open("wb") as pcap:
        pcap.write(struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        print("ready", flush=True)
        while not stop:
            try:
                data, ancillary, _flags, address = sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            if address[2] != PACKET_OUTGOING or len(data) < 42 or data[12:14] != b"\x08\x00":
                continue
            ihl = (data[14] & 0x0F) * 4
            if data[23] != 17:  # not UDP
                continue
            sport, dport = struct.unpack_from("!HH", data, 14 + ihl)
            if not (low <= sport <= high or low <= dport <= high):
                continue
            seconds, nanos = 0, 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", value[:16])
            if not seconds:
                now = time.time_ns()
                seconds, nanos = divmod(now, 1_000_000_000)
            pcap.write(struct.pack("<IIII", seconds, nanos, len(data), len(data)) + data)
        pcap.flush()


class Capture:
    """:func:`capture` in a child process (so its work does not hold the hub's GIL)."""

    def __init__(self, out: Path, low: int, high: int) -> None:
        self.out, self.low, self.high = out, low, high
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--capture-child",
            str(self.out),
            str(self.low),
            str(self.high),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 10)
        if line.strip() != b"ready":
            raise SystemExit("the packet capture did not start (AF_PACKET needs root)")

    async def stop(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


# ------------------------------------------------------------------ the wire


@dataclass(frozen=True)
class Packet:
    t: float  # seconds since the epoch (kernel timestamp)
    sport: int
    dport: int
    rms: float  # of the decoded PCMU payload; -1 for other payload types


def _ulaw_table() -> npt.NDArray[np.float64]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.float64)


ULAW: Final = _ulaw_table()


def rtp_rms(payload: bytes) -> float:
    """RMS of a PCMU RTP packet's audio (16-bit units); -1 if it is not PCMU RTP."""
    if len(payload) < 12 or payload[0] >> 6 != 2 or payload[1] & 0x7F != 0:
        return -1.0
    start = 12 + 4 * (payload[0] & 0x0F)
    if payload[0] & 0x10 and len(payload) >= start + 4:  # header extension
        start += 4 + 4 * struct.unpack_from("!H", payload, start + 2)[0]
    end = len(payload) - (payload[-1] if payload[0] & 0x20 else 0)  # padding
    audio = np.frombuffer(payload[start:end], dtype=np.uint8)
    if audio.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(ULAW[audio] ** 2)))


def read_capture(path: Path) -> list[Packet]:
    data = path.read_bytes()
    packets, offset = [], 24
    while offset + 16 <= len(data):
        seconds, nanos, caplen, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        ihl = (frame[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
        payload = frame[14 + ihl + 8 :]
        packets.append(Packet(seconds + nanos / 1e9, sport, dport, rtp_rms(payload)))
    packets.sort(key=lambda p: p.t)
    return packets


@dataclass
class Wire:
    """One call's turn as seen on the wire (epoch seconds), or why it cannot be read."""

    speech_start: float | None = None
    speech_end: float | None = None
    prompt_last: float | None = None  # Asterisk's last voiced packet before the reply
    reply_first_packet: float | None = None  # first RTP after a pause in Asterisk's stream
    reply: float | None = None  # the reply's first voiced packet
    problem: str = ""


def read_turn(
    packets: list[Packet], media_port: int, low: int, high: int, voice_rms: float, min_gap: float
) -> Wire:
    """Find the turn in one call's packets (see the module's docstring)."""
    wire = Wire()
    sent = [p for p in packets if p.sport == media_port and low <= p.dport <= high]
    heard = [p for p in packets if p.dport == media_port and low <= p.sport <= high]
    spoken = [p.t for p in sent if p.rms >= voice_rms]
    if not spoken:
        wire.problem = "no caller speech on the wire"
        return wire
    wire.speech_start, wire.speech_end = spoken[0], spoken[-1]
    voiced = [p.t for p in heard if p.rms >= voice_rms]
    after = [t for t in voiced if t > wire.speech_end]
    if not after:
        wire.problem = "no reply audio after the speech"
        return wire
    wire.reply = after[0]
    before = [t for t in voiced if t < wire.reply]
    wire.prompt_last = before[-1] if before else None
    if wire.prompt_last is not None and wire.reply - wire.prompt_last < min_gap:
        wire.problem = "no silence gap before the reply (the prompt was not stopped?)"
        return wire
    # The reply's first packet of any level, if Asterisk paused its stream before it: the
    # start of the unbroken run of packets (gaps ≤ 0.1 s) that holds the reply's first
    # voiced one. (The stopped prompt's quiet tail may run on after its last voiced
    # packet, then a pause, then the reply.)
    stream = [p.t for p in heard if p.t <= wire.reply]
    i = len(stream) - 1
    while i > 0 and stream[i] - stream[i - 1] <= 0.1:
        i -= 1
    if stream[i] > (wire.prompt_last or 0.0):
        wire.reply_first_packet = stream[i]
    return wire


# ------------------------------------------------------------------ inside the hub

CHANNEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("CHANNEL", default=None)


class Probes:
    """``time.time()`` stamps from inside the hub (which runs in this process), by
    wrapping a few methods of ``voice_ivr`` for the run. Missing names are skipped (their
    components become n/a): nothing in the hub's behaviour changes.

    Each event is (time, kind, caller channel id, detail). The listener's ASR work runs
    in worker threads; :data:`CHANNEL`, set while ``CallListener.hear`` runs, reaches
    them through ``asyncio.to_thread``'s context copy. The hub's side of a bot turn
    (``rasa_start``/``rasa_end``, ``deliver``, ``turn_end``) is keyed by the conversation
    id instead (the CDR's ``conversation_id`` links it to the call).
    """

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str | None, str]] = []
        self.installed: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def record(self, kind: str, channel: str | None, detail: str = "") -> None:
        self.events.append((time.time(), kind, channel, detail))

    def _patch(self, module: str, owner: str, name: str, make: Callable[[Any], Any]) -> None:
        try:
            cls = getattr(__import__(module, fromlist=[owner]), owner)
            original = getattr(cls, name)
        except (ImportError, AttributeError):
            return
        setattr(cls, name, functools.wraps(original)(make(original)))
        self._undo.append(lambda: setattr(cls, name, original))
        self.installed.append(f"{owner}.{name}")

    def install(self) -> None:
        record = self.record

        def hear(original: Any) -> Any:
            async def wrapper(listener: Any, *args: Any, **kwargs: Any) -> Any:
                channel = getattr(listener, "channel_id", None)
                token = CHANNEL.set(channel)
                try:
                    result = await original(listener, *args, **kwargs)
                finally:
                    CHANNEL.reset(token)
                record("heard", channel, str(getattr(result, "text", "")))
                return result

            return wrapper

        def in_thread(kind: str) -> Callable[[Any], Any]:
            def make(original: Any) -> Any:
                def wrapper(obj: Any, *args: Any, **kwargs: Any) -> Any:
                    record(kind, CHANNEL.get())
                    return original(obj, *args, **kwargs)

                return wrapper

            return make

        def per_call(kind: str) -> Callable[[Any], Any]:
            def make(original: Any) -> Any:
                async def wrapper(ivr: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
                    text = str(args[0])[:40] if args else ""
                    record(kind, getattr(call, "channel_id", None), text)
                    return await original(ivr, call, *args, **kwargs)

                return wrapper

            return make

        def play(original: Any) -> Any:
            async def wrapper(ari: Any, channel_id: str, *args: Any, **kwargs: Any) -> Any:
                record("play_request", channel_id)
                return await original(ari, channel_id, *args, **kwargs)

            return wrapper

        def rasa(original: Any) -> Any:
            async def wrapper(client: Any, conversation_id: str, *args: Any, **kwargs: Any) -> Any:
                record("rasa_start", conversation_id)
                try:
                    return await original(client, conversation_id, *args, **kwargs)
                finally:
                    record("rasa_end", conversation_id)

            return wrapper

        def deliver(original: Any) -> Any:
            async def wrapper(channel: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
                record("deliver", getattr(message, "conversation_id", None))
                return await original(channel, message, *args, **kwargs)

            return wrapper

        def busy(original: Any) -> Any:
            async def wrapper(channel: Any, conversation_id: str, on: bool) -> Any:
                if not on:  # the end of the bot's turn: the IVR may speak its replies
                    record("turn_end", conversation_id)
                return await original(channel, conversation_id, on)

            return wrapper

        self._patch("voice_ivr.listen", "CallListener", "hear", hear)
        self._patch("voice_ivr.asr", "PocketsphinxSession", "_end", in_thread("utterance_end"))
        self._patch("voice_ivr.listen", "_Recognizer", "finish", in_thread("finish"))
        self._patch("voice_ivr.ivr", "Ivr", "say", per_call("say"))
        self._patch("voice_ivr.ivr", "Ivr", "play_file", per_call("play_file"))
        self._patch("voice_ivr.ari", "AriClient", "play", play)
        self._patch("hotline.bot", "RasaClient", "converse", rasa)
        self._patch("voice_ivr.line", "VoiceChannel", "deliver", deliver)
        self._patch("voice_ivr.line", "VoiceChannel", "busy", busy)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def first(self, kind: str, channel: str, after: float, before: float = float("inf")) -> float:
        """Time of the first ``kind`` event of ``channel`` in (after, before); nan if none."""
        for t, k, c, _ in self.events:
            if k == kind and c == channel and after < t < before:
                return t
        return float("nan")

    def last(self, kind: str, channel: str, after: float, before: float) -> float:
        found = [
            t for t, k, c, _ in self.events if k == kind and c == channel and after < t < before
        ]
        return found[-1] if found else float("nan")


# ------------------------------------------------------------------ one call


@dataclass
class CallResult:
    caller: str
    media_port: int
    sipp_ok: bool = False
    sipp_errors: str = ""
    path: list[tuple[str, Any]] = field(default_factory=list)
    problem: str = ""
    latency_ms: float = float("nan")
    parts_ms: dict[str, float] = field(default_factory=dict)
    endpoint_by: str = ""  # which ended the utterance: the recognizer or the listener

    @property
    def valid(self) -> bool:
        return not self.problem


def media_port(low: int, high: int) -> int:
    """A free UDP port outside Asterisk's RTP range (so the two ends are told apart)."""
    while True:
        port = free_udp_port()
        if not low <= port <= high:
            return port


def caller_scenario(stack: Stack, scen: Scenario, pcap: Path, pcap_seconds: float) -> Path:
    """tests/voice.scenario() with the keys, the speech, then a pause to listen, then BYE."""
    steps: list[Step] = [*scen.keys, (scen.speak_after_ms, pcap)]
    path = scenario("[field0]", steps, stack.settings.sip_trunk_password, hangs_up=True)
    text = path.read_text()
    # The last BYE: the template's leading comment mentions the blocks and gets a copy.
    bye = text.rindex("<send", 0, text.rindex("BYE [next_url]"))
    bye = text.rindex("\n", 0, bye) + 1
    stay = round(pcap_seconds * 1000) + 300  # pcap play runs in the background
    text = text[:bye] + f'  <pause milliseconds="{stay}"/>\n' + text[bye:]
    path.write_text(text)
    return mark_completion(path)


def proven(path: list[tuple[str, Any]], proof: tuple[tuple[str, str | None], ...]) -> bool:
    """``proof`` is an in-order subsequence of ``path`` (``None`` matches any value)."""
    steps = iter(path)
    return all(
        any(step == want and (value is None or got == value) for step, got in steps)
        for want, value in proof
    )


def _step_time(record: CallRecord, step: tuple[str, str | None]) -> float:
    """Time of the first ``step`` (name, value; ``None``: any value) in the CDR; nan if none."""
    name, value = step
    for s in record.ivr_path:
        if s["step"] == name and (value is None or s.get("value") == value):
            return dt.datetime.fromisoformat(s["at"]).timestamp()
    return float("nan")


def judge(
    result: CallResult,
    record: CallRecord | None,
    wire: Wire,
    probes: Probes,
    scen: Scenario,
) -> None:
    """Fill in ``result``: the latency and its parts, or the reason it does not count."""
    if record is None:
        result.problem = "no CDR"
        return
    result.path = [(s["step"], s.get("value")) for s in record.ivr_path]
    if not proven(result.path, scen.proof):
        result.problem = f"CDR lacks {list(scen.proof)}: {result.path}"
        return
    if not result.sipp_ok:
        result.problem = f"SIPp did not complete the call: {result.sipp_errors[:120]}"
        return
    if wire.problem:
        result.problem = wire.problem
        return
    assert wire.speech_start is not None and wire.speech_end is not None
    assert wire.reply is not None
    end, reply = wire.speech_end, wire.reply
    result.latency_ms = 1000 * (reply - end)
    parts = result.parts_ms
    parts["speech"] = 1000 * (end - wire.speech_start)
    if wire.prompt_last is not None and wire.prompt_last > wire.speech_start:
        parts["talk_over"] = 1000 * (wire.prompt_last - wire.speech_start)  # barge-in delay
    parts["cdr"] = 1000 * (_step_time(record, scen.cdr_step) - end)
    channel = record.channel_id
    heard = probes.first("heard", channel, wire.speech_start, reply + 5)
    if heard == heard:  # not nan: the probes saw the turn
        by_recognizer = probes.last("utterance_end", channel, wire.speech_start, heard)
        by_listener = probes.last("finish", channel, wire.speech_start, heard)
        if by_listener == by_listener and not by_recognizer <= by_listener:
            endpoint, result.endpoint_by = by_listener, "listener (end of silence)"
        else:
            endpoint, result.endpoint_by = by_recognizer, "recognizer (endpointer)"
        answered = heard  # where the IVR's own part begins
        conversation = record.conversation_id
        if scen.needs_bot and conversation:
            turn_end = probes.first("turn_end", conversation, heard, reply + 5)
            if turn_end == turn_end:
                rasa_start = probes.first("rasa_start", conversation, heard, turn_end)
                rasa_end = probes.first("rasa_end", conversation, rasa_start, turn_end)
                parts["bot"] = 1000 * (turn_end - heard)
                parts["rasa"] = 1000 * (rasa_end - rasa_start)
                answered = turn_end
        say = probes.first("say", channel, answered)
        play_file = probes.first("play_file", channel, answered)
        request = probes.first("play_request", channel, answered)
        parts["detect"] = 1000 * (endpoint - end)
        parts["recognize"] = 1000 * (heard - endpoint)
        parts["ivr"] = 1000 * (request - answered)
        parts["synth"] = 1000 * (play_file - say)
        parts["asterisk"] = 1000 * (reply - request)
        if request == request and reply < request - 0.005:
            result.problem = "the reply on the wire began before the hub asked for it"
            return
    if wire.reply_first_packet is not None:
        parts["lead"] = 1000 * (reply - wire.reply_first_packet)


async def place_call(
    stack: Stack, scen: Scenario, pcap: Path, pcap_seconds: float, caller: str
) -> CallResult:
    low, high = stack.settings.rtp_start, stack.settings.rtp_start + 999
    port = media_port(low, high)
    path = caller_scenario(stack, scen, pcap, pcap_seconds)
    done, errors = await sipp_calls(
        stack.settings, path, [[caller]], name="1", media_port=port, timeout="90s"
    )
    return CallResult(caller, port, sipp_ok=caller in done, sipp_errors=errors)


# ------------------------------------------------------------------ the bot


@contextlib.asynccontextmanager
async def bot_stack(
    scen: Scenario, settings: Settings, model: Path | None, logs: Path
) -> AsyncIterator[list[Child]]:
    """For a scenario that ``needs_bot``: Rasa with the trained model and the action
    server, on the URLs and token of the hub's ``settings``, ready (as ``tests/conftest.py``'s
    ``rasa_stack``); stopped on the way out. Nothing for other scenarios."""
    if not scen.needs_bot:
        yield []
        return
    model = model or model_path(settings)
    if not model.exists():
        raise SystemExit(f"no trained model at {model}: run `make test` (it trains first)")
    children = rasa_children(settings, model, logs)
    try:
        for child in children:
            child.start()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # wait_ready prints its progress
                await wait_ready(children)
        except RuntimeError as exc:
            raise SystemExit(f"the bot did not start: {exc} (logs in {logs})") from exc
        yield children
    finally:
        for child in reversed(children):
            child.stop()


def group_cpu(groups: set[int]) -> float:
    """utime + stime of the live processes in the process groups ``groups``, in seconds
    (Rasa's children each lead their own group; rasa-sdk forks workers into it)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


# ------------------------------------------------------------------ the run


def machine() -> dict[str, Any]:
    model = mhz = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        if key.strip() == "cpu MHz" and not mhz:
            mhz = value.strip()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "cpu_mhz": mhz,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
    }


def summary(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v == v]
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(pct(values, 0.5)),
        "p95": round(pct(values, 0.95)),
        "min": round(min(values)),
        "max": round(max(values)),
    }


PARTS: Final = ("detect", "recognize", "bot", "rasa", "ivr", "synth", "asterisk", "lead", "cdr")
EXTRA: Final = ("speech", "talk_over")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise SystemExit("run as root: chroot (Asterisk), raw sockets (SIPp pcap play, capture)")
    check_ready(args.root)
    scen = SCENARIOS[args.scenario]
    if args.cold_tts:
        prompts = args.root / "var/lib/hotline/prompts"
        if args.root.resolve() == (ROOT / "var/asterisk-root").resolve():
            raise SystemExit("--cold-tts empties the root's prompt cache: use a copy of the root")
        for cached in prompts.glob("*.wav"):
            cached.unlink()
    code = code_version()
    work = Path(tempfile.mkdtemp(prefix="hotline-voice-latency-"))
    wav = speak(scen.phrase, work / "speech.wav", voice=scen.voice)
    pcap = work / "speech.pcap"
    pcap_seconds = write_rtp_pcap(
        wav,
        pcap,
        lead_silence=scen.lead,
        tail_silence=scen.listen_ms / 1000,
        line_noise=args.line_noise,
    )
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    logging.getLogger().setLevel(logging.WARNING)
    probes = Probes()
    probes.install()
    results: list[CallResult] = []
    cold: CallResult | None = None
    capture_file = work / "rtp.pcap"

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    try:
        async with (
            voice_stack(args.root) as stack,
            bot_stack(scen, stack.settings, args.model, work) as bot,
        ):
            groups = {child.proc.pid for child in bot if child.proc is not None}
            low, high = stack.settings.rtp_start, stack.settings.rtp_start + 999
            cap = Capture(capture_file, low, high)
            await cap.start()
            try:
                me, ast = os.getpid(), stack.asterisk_pid
                cold = await place_call(stack, scen, pcap, pcap_seconds, "14100000000")
                say(f"warm-up call done (SIPp ok: {cold.sipp_ok})")
                load0 = loadavg()
                hub0, ast0, kids0 = cpu_seconds(me), cpu_seconds(ast), children_cpu()
                bot0 = group_cpu(groups)
                busy0, _ = machine_busy()
                t0 = time.monotonic()
                gate = asyncio.Semaphore(args.concurrency)

                async def one(i: int) -> CallResult:
                    async with gate:
                        result = await place_call(
                            stack, scen, pcap, pcap_seconds, f"1410000{i + 1:04d}"
                        )
                        say(f"call {i + 1}/{args.calls} done (SIPp ok: {result.sipp_ok})")
                        return result

                tasks = []
                for i in range(args.calls):
                    tasks.append(asyncio.create_task(one(i)))
                    if args.concurrency > 1:
                        await asyncio.sleep(args.stagger)
                results = list(await asyncio.gather(*tasks))
                wall = time.monotonic() - t0
                hub_cpu = cpu_seconds(me) - hub0
                ast_cpu = cpu_seconds(ast) - ast0
                sipp_cpu = children_cpu() - kids0
                bot_cpu = group_cpu(groups) - bot0
                busy = machine_busy()[0] - busy0
                other = max(0.0, busy - hub_cpu - ast_cpu - sipp_cpu - bot_cpu)
                callers = [r.caller for r in [cold, *results]]
                records = await finished_records(stack.settings.database_url, callers, 20.0)
            finally:
                await cap.stop()
    finally:
        probes.uninstall()
        logging.getLogger().removeHandler(warnings)
    packets = read_capture(capture_file)
    for result in [cold, *results]:
        assert result is not None
        wire = read_turn(packets, result.media_port, low, high, args.voice_rms, args.min_gap)
        judge(result, records.get(result.caller), wire, probes, scen)
    valid = [r for r in results if r.valid]
    out: dict[str, Any] = {
        "scenario": scen.name,
        "phrase": scen.phrase,
        "calls": len(results),
        "valid": len(valid),
        "concurrency": args.concurrency,
        "latency_ms": summary([r.latency_ms for r in valid]),
        "parts_ms": {k: summary([r.parts_ms.get(k, float("nan")) for r in valid]) for k in PARTS},
        "extra_ms": {k: summary([r.parts_ms.get(k, float("nan")) for r in valid]) for k in EXTRA},
        "cold_tts": args.cold_tts,
        "cold_call": {
            "latency_ms": round(cold.latency_ms) if cold and cold.valid else None,
            "parts_ms": {k: round(v) for k, v in cold.parts_ms.items() if v == v}
            if cold and cold.valid
            else {},
            "problem": cold.problem if cold else "not placed",
        },
        "endpoint_by": dict(Counter(r.endpoint_by for r in valid if r.endpoint_by)),
        "flagged": [{"caller": r.caller, "problem": r.problem} for r in results if not r.valid],
        "per_call": [
            {
                "caller": r.caller,
                "latency_ms": round(r.latency_ms) if r.valid else None,
                **{k: round(v) for k, v in r.parts_ms.items() if v == v},
            }
            for r in results
        ],
        "probes": probes.installed,
        "hub_warnings": dict(Counter(warnings.seen)),
        "busy_s": round(wall, 1),
        "hub_cpu_pct": round(100 * hub_cpu / wall, 1),
        "asterisk_cpu_pct": round(100 * ast_cpu / wall, 1),
        "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
        "bot_cpu_pct": round(100 * bot_cpu / wall, 1) if groups else None,
        "other_cpu_pct": round(100 * other / wall, 1),
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
        "voice_rms": args.voice_rms,
        "min_gap_s": args.min_gap,
        "line_noise": args.line_noise,
        "machine": machine(),
        "code": code if code_version() == code else f"{code}, then {code_version()}",
        "date": dt.date.today().isoformat(),
        "capture": str(capture_file) if args.keep_pcap else None,
        "bot_logs": str(work) if scen.needs_bot else None,
    }
    if not args.keep_pcap:
        capture_file.unlink(missing_ok=True)
    return out


def show(result: dict[str, Any]) -> Iterator[str]:
    m = result["machine"]
    yield (
        f"{result['scenario']} ({result['phrase']!r}): {result['valid']}/{result['calls']} "
        f"valid calls, concurrency {result['concurrency']}"
    )
    lat = result["latency_ms"]
    if lat:
        yield (
            f"end of speech -> first reply audio: p50 {lat['p50']} ms, p95 {lat['p95']} ms "
            f"(min {lat['min']}, max {lat['max']}, n {lat['n']})"
        )
    for group in ("parts_ms", "extra_ms"):
        for name, s in result[group].items():
            if s:
                yield f"  {name:>10}: p50 {s['p50']:>5} ms  p95 {s['p95']:>5} ms  max {s['max']:>5}"
            else:
                yield f"  {name:>10}: n/a"
    yield f"utterance ended by: {result['endpoint_by']}"
    cold = result["cold_call"]
    yield f"warm-up call: {cold['latency_ms']} ms {cold['parts_ms']} {cold['problem']}"
    for flag in result["flagged"]:
        yield f"flagged {flag['caller']}: {flag['problem']}"
    if result["hub_warnings"]:
        yield f"hub warnings: {result['hub_warnings']}"
    bot = "" if result["bot_cpu_pct"] is None else f"rasa+actions {result['bot_cpu_pct']}%, "
    yield (
        f"CPU over {result['busy_s']} s: hub {result['hub_cpu_pct']}%, asterisk "
        f"{result['asterisk_cpu_pct']}%, sipp {result['sipp_cpu_pct']}%, {bot}other "
        f"{result['other_cpu_pct']}%; load {' '.join(result['loadavg_before'])} -> "
        f"{' '.join(result['loadavg_after'])}"
    )
    yield (
        f"machine: nproc {m['nproc']}, {m['cpu_model']} ({m['cpu_mhz']} MHz), {m['arch']}, "
        f"{m['memory_gb']} GB, python {m['python']}; code {result['code']}; {result['date']}"
    )
    if result["capture"]:
        yield f"capture kept: {result['capture']}"
    if result["bot_logs"]:
        yield f"Rasa and action server logs: {result['bot_logs']}"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--capture-child":
        capture(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20, help="measured calls (default 20)")
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight at once")
    parser.add_argument(
        "--stagger", type=float, default=1.0, help="seconds between call starts when concurrent"
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="menu-case-status")
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-root"))
    parser.add_argument(
        "--voice-rms", type=float, default=200.0, help="packet RMS that counts as voiced"
    )
    parser.add_argument(
        "--min-gap", type=float, default=0.3, help="Asterisk silence required before the reply (s)"
    )
    parser.add_argument(
        "--line-noise", type=float, default=30.0, help="caller's line noise (std, 16-bit units)"
    )
    parser.add_argument(
        "--cold-tts",
        action="store_true",
        help="empty the root's prompt cache first, so the warm-up call synthesizes its prompts",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the trained Rasa model for bot scenarios (default: models/ as `make test` trains)",
    )
    parser.add_argument("--keep-pcap", action="store_true", help="keep the RTP capture")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be at least 1")
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run(args))
        if args.json:
            print(json.dumps(result))
        else:
            print("\n".join(show(result)))


if __name__ == "__main__":
    main()
