"""A caller's SIP phone for tests that need interactive turns (SIPp scripts fixed pauses).

A small asyncio user agent over UDP, enough to call the hotline through its trunk the
way ``tests/sipp/caller_dtmf_info.xml`` does: INVITE answered with digest auth, an SDP
offer of PCMU, ACK, keys as SIP INFO (``application/dtmf-relay``, like
``tests/sipp/key_info.xml``), BYE. It also answers what Asterisk sends it (BYE,
OPTIONS, a re-INVITE).

Media is one RTP stream each way. Out: 20 ms PCMU frames, always flowing: silence, or
the speech queued with :meth:`SipPhone.speak` (espeak-ng, 8 kHz µ-law). In: what the
caller hears, decoded, with the level of each frame, so a test can wait for the moment
a prompt starts playing (:meth:`SipPhone.wait_sound`) or keep the audio.

Written here rather than taken from PyPI: pyVoIP cannot send DTMF, aiosip is abandoned
(2017), and the tests need the raw datagrams (a retransmitted INFO byte for byte,
garbage and oversize datagrams), which a UA library hides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.audio_pcap import FRAME_SAMPLES, PCMU, read_pcm, speak, ulaw_encode

SILENCE = b"\xff" * FRAME_SAMPLES  # µ-law zero
FRAME = 0.02


def ulaw_decode(data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    """16-bit samples of G.711 µ-law bytes (the ITU-T reference expansion)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: str

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse(data: bytes) -> tuple[str, dict[str, str], str]:
    """First line, headers (lower-cased names; the first of repeated ones), body."""
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers, body


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The ``Authorization`` value answering a ``WWW-Authenticate: Digest`` challenge."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1, ha2 = _md5(f"{user}:{realm}:{password}"), _md5(f"{method}:{uri}")
    value = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        answer = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        value += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        answer = _md5(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        value += f', opaque="{params["opaque"]}"'
    return value + f', response="{answer}", algorithm=MD5'


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data, addr)


@dataclass
class _Heard:
    """The audio received: frames' arrival times and levels, and the samples."""

    times: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    pcm: list[bytes] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class SipPhone:
    """One caller: ``await call()``, then keys, speech, ``hang_up()``; ``close()`` always."""

    def __init__(self, server: tuple[str, int], caller: str, password: str) -> None:
        self.server, self.caller, self.password = server, caller, password
        self.host = "127.0.0.1"
        self.call_id = f"{secrets.token_hex(8)}@{self.host}"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.remote_tag = ""
        self.remote_target = ""  # the Contact of the 200 OK: where in-dialog requests go
        self.media: tuple[str, int] | None = None  # Asterisk's RTP address
        self.ended = asyncio.Event()  # the call is over (BYE either way)
        self.heard = _Heard()
        self.last_info: bytes | None = None
        self._responses: dict[tuple[int, str], asyncio.Queue[Response]] = {}
        self._unmatched: asyncio.Queue[Response] = asyncio.Queue()
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        # Speech frames, sent by a thread of its own: paced by the clock, not by an event
        # loop that also runs the hub (late packets become holes in the words).
        self._outgoing: queue.Queue[bytes | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._spoken: asyncio.Event | None = None

    # ---------------------------------------------------------------- set-up
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sip, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_sip), local_addr=(self.host, 0)
        )
        rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_rtp), local_addr=(self.host, 0)
        )
        self._sip, self._rtp = sip, rtp
        self.port = int(sip.get_extra_info("sockname")[1])
        self.rtp_port = int(rtp.get_extra_info("sockname")[1])

    @property
    def uri(self) -> str:
        return f"sip:{self.caller}@{self.host}:{self.port}"

    def _sdp(self) -> str:
        return (
            "v=0\r\n"
            f"o=caller {self.rtp_port} 1 IN IP4 {self.host}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {self.host}\r\n"
            "t=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP {PCMU} 101\r\n"
            f"a=rtpmap:{PCMU} PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=sendrecv\r\n"
        )

    def _request(
        self,
        method: str,
        uri: str,
        cseq: int,
        *,
        to_tag: str = "",
        headers: tuple[str, ...] = (),
        body: str = "",
        content_type: str = "",
    ) -> bytes:
        to = f"<sip:{uri.split(':', 1)[1].split('@')[0]}@{self.server[0]}:{self.server[1]}>"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
            f'From: "{self.caller}" <sip:{self.caller}@{self.host}:{self.port}>;tag={self.tag}',
            f"To: {to}" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <{self.uri}>",
            "Max-Forwards: 70",
            "User-Agent: hotline-tests",
            *headers,
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send(self, data: bytes) -> None:
        """Put one datagram on the wire to Asterisk's SIP port, as it is."""
        assert self._sip is not None
        self._sip.sendto(data, self.server)

    async def response(self, cseq: int, method: str, timeout: float = 5) -> Response:
        """The next response to request ``cseq``/``method`` (provisional ones included)."""
        queue = self._responses.setdefault((cseq, method), asyncio.Queue())
        return await asyncio.wait_for(queue.get(), timeout)

    async def final(self, cseq: int, method: str, timeout: float = 5) -> Response:
        while True:
            answer = await self.response(cseq, method, timeout)
            if answer.status >= 200:
                return answer

    async def transact(self, data: bytes, cseq: int, method: str, timeout: float = 5) -> Response:
        """Send a request (retransmitted every 0.5 s, as UDP needs) until its final answer."""
        self._responses.setdefault((cseq, method), asyncio.Queue())
        for _ in range(int(timeout / 0.5)):
            self.send(data)
            with contextlib.suppress(TimeoutError):
                return await self.final(cseq, method, 0.5)
        raise TimeoutError(f"no answer to {method} {cseq}")

    # ------------------------------------------------------------------ call
    async def call(self, number: str) -> None:
        """Dial ``number`` through the trunk (digest auth) and start the media."""
        await self.open()
        uri = f"sip:{number}@{self.server[0]}:{self.server[1]}"
        sdp = self._sdp()
        self.cseq = 1
        invite = self._request("INVITE", uri, 1, body=sdp, content_type="application/sdp")
        answer = await self.transact(invite, 1, "INVITE")
        if answer.status in (401, 407):
            self._ack_failure(uri, answer, 1)
            name = "www-authenticate" if answer.status == 401 else "proxy-authenticate"
            auth = digest(answer.header(name), "INVITE", uri, "trunk", self.password)
            header = "Authorization" if answer.status == 401 else "Proxy-Authorization"
            self.cseq = 2
            invite = self._request(
                "INVITE",
                uri,
                2,
                headers=(f"{header}: {auth}",),
                body=sdp,
                content_type="application/sdp",
            )
            answer = await self.transact(invite, 2, "INVITE", timeout=10)
        assert answer.status == 200, (answer.status, answer.reason)
        self.remote_tag = _tag(answer.header("to"))
        contact = re.search(r"<([^>]+)>", answer.header("contact"))
        self.remote_target = contact.group(1) if contact else uri
        self.media = _media(answer.body)
        ack = self._request("ACK", self.remote_target, self.cseq, to_tag=self.remote_tag)
        self.send(ack)
        self._sender = threading.Thread(
            target=self._send_media, args=(asyncio.get_running_loop(),), daemon=True
        )
        self._sender.start()

    def _ack_failure(self, uri: str, answer: Response, cseq: int) -> None:
        """The ACK of a non-2xx final answer (same transaction: the INVITE's Via)."""
        lines = [
            f"ACK {uri} SIP/2.0",
            f"Via: {answer.header('via')}",
            f"From: {answer.header('from')}",
            f"To: {answer.header('to')}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} ACK",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def info(self, body: str, content_type: str = "application/dtmf-relay") -> tuple[bytes, int]:
        """An in-dialog INFO request (not sent): its bytes and CSeq."""
        self.cseq += 1
        data = self._request(
            "INFO",
            self.remote_target,
            self.cseq,
            to_tag=self.remote_tag,
            body=body,
            content_type=content_type,
        )
        return data, self.cseq

    async def key(self, digit: str) -> Response:
        """Press a key: one SIP INFO with ``Signal=digit``; Asterisk's final answer."""
        data, cseq = self.info(f"Signal={digit}\r\nDuration=160\r\n")
        self.last_info = data
        return await self.transact(data, cseq, "INFO")

    async def keys(self, digits: str) -> None:
        for digit in digits:
            answer = await self.key(digit)
            assert answer.status == 200, (digit, answer.status, answer.reason)

    async def retransmit_last_key(self) -> Response:
        """The last key's INFO again, byte for byte (a retransmission: same branch, CSeq)."""
        assert self.last_info is not None
        cseq = int(re.search(rb"CSeq: (\d+) INFO", self.last_info).group(1))  # type: ignore[union-attr]
        queue = self._responses.setdefault((cseq, "INFO"), asyncio.Queue())
        while not queue.empty():
            queue.get_nowait()
        self.send(self.last_info)
        return await self.final(cseq, "INFO")

    async def hang_up(self) -> None:
        if self.ended.is_set() or not self.remote_tag:
            return
        self.cseq += 1
        bye = self._request("BYE", self.remote_target, self.cseq, to_tag=self.remote_tag)
        with contextlib.suppress(TimeoutError):
            await self.transact(bye, self.cseq, "BYE")
        self.ended.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.hang_up()
        self._stop.set()
        if self._sender is not None:
            await asyncio.to_thread(self._sender.join, 2)
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    # ------------------------------------------------------------- incoming
    def _on_sip(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        first, headers, body = parse(data)
        if first.startswith("SIP/2.0 "):
            status, _, reason = first[8:].partition(" ")
            number, _, method = headers.get("cseq", "0 ?").partition(" ")
            answer = Response(int(status), reason, headers, body)
            queue = self._responses.get((int(number), method.strip()))
            (queue or self._unmatched).put_nowait(answer)
            return
        method = first.split(" ", 1)[0]
        if method == "ACK":
            return
        extra = ""
        if method == "INVITE":  # a re-INVITE: same media
            sdp = self._sdp()
            extra = f"Content-Type: application/sdp\r\nContact: <{self.uri}>\r\n"
            media = _media(body)
            self.media = media or self.media
        else:
            sdp = ""
        lines = [
            "SIP/2.0 200 OK",
            *(f"Via: {v}" for v in _all(data, "via")),
            f"From: {headers.get('from', '')}",
            f"To: {headers.get('to', '')}",
            f"Call-ID: {headers.get('call-id', '')}",
            f"CSeq: {headers.get('cseq', '')}",
        ]
        reply = "\r\n".join(lines) + "\r\n" + extra + f"Content-Length: {len(sdp)}\r\n\r\n" + sdp
        assert self._sip is not None
        self._sip.sendto(reply.encode(), addr)
        if method == "BYE":
            self.ended.set()

    def _on_rtp(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12 or data[1] & 0x7F != PCMU:
            return
        count = data[0] & 0x0F
        payload = data[12 + 4 * count :]
        samples = ulaw_decode(payload)
        self.heard.times.append(time.monotonic())
        self.heard.levels.append(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))))
        self.heard.pcm.append(samples.tobytes())
        self.heard.changed.set()

    # ----------------------------------------------------------------- media
    def _send_media(self, loop: asyncio.AbstractEventLoop) -> None:
        """20 ms frames, paced by the clock: speech when queued, else silence."""
        assert self._rtp is not None and self.media is not None
        sock = socket.socket(fileno=self._rtp.get_extra_info("socket").fileno())
        ssrc, seq, stamp = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        start, n = time.monotonic(), 0
        try:
            while not self._stop.is_set() and not self.ended.is_set():
                try:
                    payload = self._outgoing.get_nowait()
                except queue.Empty:
                    payload = SILENCE
                if payload is None:  # the end of an utterance
                    spoken = self._spoken
                    if spoken is not None:
                        loop.call_soon_threadsafe(spoken.set)
                    continue
                header = struct.pack(
                    "!BBHII", 0x80, (0x80 if n == 0 else 0) | PCMU, seq & 0xFFFF, stamp, ssrc
                )
                with contextlib.suppress(OSError):
                    sock.sendto(header + payload, self.media)
                n, seq, stamp = n + 1, seq + 1, (stamp + FRAME_SAMPLES) & 0xFFFFFFFF
                time.sleep(max(0.0, start + n * FRAME - time.monotonic()))
        finally:
            sock.detach()

    async def speak(self, text: str, folder: Path) -> None:
        """Say ``text`` (espeak-ng, en-us) into the call; returns once it has been sent."""
        wav = await asyncio.to_thread(speak, text, folder / f"{secrets.token_hex(4)}.wav")
        ulaw = ulaw_encode(read_pcm(wav))
        ulaw += SILENCE[: (-len(ulaw)) % FRAME_SAMPLES]
        self._spoken = spoken = asyncio.Event()
        for i in range(0, len(ulaw), FRAME_SAMPLES):
            self._outgoing.put(ulaw[i : i + FRAME_SAMPLES])
        self._outgoing.put(None)
        await asyncio.wait_for(spoken.wait(), len(ulaw) / 8000 + 5)

    def sound_since(self, since: float, level: float = 500.0) -> bool:
        """Whether something was heard (a frame above ``level``) after ``since``."""
        times, levels = self.heard.times, self.heard.levels
        i = len(times)
        while i > 0 and times[i - 1] > since:
            i -= 1
            if levels[i] >= level:
                return True
        return False

    def _last_loud(self, level: float) -> float:
        times, levels = self.heard.times, self.heard.levels
        for i in range(len(times) - 1, -1, -1):
            if levels[i] >= level:
                return times[i]
        return 0.0

    async def wait_quiet(
        self, quiet: float = 0.8, timeout: float = 60, level: float = 500.0
    ) -> None:
        """Until nothing has been heard for ``quiet`` seconds (the prompt has ended, and the
        IVR's recognizer listens)."""
        async with asyncio.timeout(timeout):
            while (gap := time.monotonic() - self._last_loud(level)) < quiet:
                await asyncio.sleep(quiet - gap)

    async def wait_sound(self, since: float, timeout: float = 20, level: float = 500.0) -> None:
        """Until the caller hears something (a prompt starting) after ``since``."""
        async with asyncio.timeout(timeout):
            while not self.sound_since(since, level):
                self.heard.changed.clear()
                await self.heard.changed.wait()


def _tag(header: str) -> str:
    found = re.search(r";\s*tag=([^;>\s]+)", header)
    return found.group(1) if found else ""


def _all(data: bytes, name: str) -> list[str]:
    head = data.decode("utf-8", "replace").partition("\r\n\r\n")[0]
    return [
        line.partition(":")[2].strip()
        for line in head.split("\r\n")[1:]
        if line.partition(":")[0].strip().lower() == name
    ]


def _media(sdp: str) -> tuple[str, int] | None:
    host = re.search(r"^c=IN IP4 (\S+)", sdp, re.M)
    port = re.search(r"^m=audio (\d+)", sdp, re.M)
    if host is None or port is None:
        return None
    return host.group(1), int(port.group(1))
