"""Speech for SIPp to send into a call: espeak-ng audio as a pcap of G.711 RTP packets.

SIPp's ``<exec play_pcap_audio="FILE"/>`` replays the UDP payloads of a capture from
the call's media port to the media address of the SDP answer, paced by the packets'
capture timestamps. So the file is an ordinary libpcap capture (Ethernet, IPv4, UDP)
of RTP: payload type 0 (PCMU/8000, the codec the test caller offers), one packet per
20 ms (160 samples), consecutive sequence numbers and timestamps, marker bit on the
first packet of the talk spurt.

:func:`speak` makes the audio with espeak-ng and sox directly: ``EspeakTts`` in
``voice_ivr/tts.py`` only knows the hotline's own languages (zh, en), and the tests
also need the Korean voice. Its :func:`check_wav` still checks what came out.

:func:`speaking_call` dials the hotline with ``tests/sipp/caller_speaks.xml``: the
caller waits, speaks the capture, waits, and hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from hotline.config import Settings
from voice_ivr.tts import check_wav

SCENARIO: Final = Path(__file__).parent / "sipp" / "caller_speaks.xml"

RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz
PCMU: Final = 0

_LINKTYPE_ETHERNET: Final = 1
_MU_BIAS: Final = 0x84
_MU_CLIP: Final = 32635


def speak(text: str, out: Path, *, voice: str = "en-us", speed: int = 150) -> Path:
    """Synthesize ``text`` into ``out``: an 8 kHz mono 16-bit WAV (espeak-ng, then sox).

    ``-R``: sox without random dither, so the same text always gives the same bytes;
    ``-G``: guard against clipping when converting.
    """
    raw = out.with_name(out.stem + ".espeak.wav")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    fmt = ["-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
    subprocess.run(
        ["sox", "-R", "-G", str(raw), *fmt, "-t", "wav", str(out)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    raw.unlink()
    check_wav(out)
    return out


def read_pcm(source: Path | bytes) -> bytes:
    """16-bit mono 8 kHz PCM from a WAV file, or ``bytes`` taken as such PCM already."""
    if isinstance(source, bytes):
        return source
    with wave.open(str(source), "rb") as wav:
        shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        if shape != (1, 2, RATE):
            raise ValueError(f"{source}: want mono 16-bit {RATE} Hz, got {shape}")
        return wav.readframes(wav.getnframes())


def ulaw_encode(pcm: bytes) -> bytes:
    """G.711 µ-law of 16-bit little-endian samples (the ITU-T reference algorithm)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0).astype(np.int32)
    magnitude = np.minimum(np.abs(samples), _MU_CLIP) + _MU_BIAS
    # The segment is the position of the highest set bit above bit 7 (0..7).
    exponent: npt.NDArray[np.int32] = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _packet(payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # no UDP sum
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # IPv4, 20-byte header
        0,
        20 + len(udp),
        ident & 0xFFFF,
        0x4000,  # don't fragment
        64,
        17,  # UDP
        0,
        bytes(int(part) for part in src[0].split(".")),
        bytes(int(part) for part in dst[0].split(".")),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ethernet = bytes.fromhex("020000000002020000000001") + struct.pack("!H", 0x0800)
    return ethernet + ip + udp


def write_rtp_pcap(
    source: Path | bytes,
    out: Path,
    *,
    src: tuple[str, int] = ("127.0.0.1", 6000),
    dst: tuple[str, int] = ("127.0.0.1", 6002),
    lead_silence: float = 0.0,
    tail_silence: float = 0.0,
    line_noise: float = 0.0,
) -> float:
    """Write ``source`` (8 kHz WAV or PCM) as PCMU RTP in a pcap at ``out``; return seconds.

    ``lead_silence``/``tail_silence`` add that much quiet around the speech, so the far
    end hears a steady stream rather than a spurt; ``line_noise`` adds seeded white noise
    of that standard deviation (16-bit units) throughout, as a real line has: digital
    silence is not what a caller sends. The addresses are placeholders: SIPp sends each
    payload to the media address the call negotiated.
    """
    pcm = read_pcm(source)
    pad = b"\x00\x00"
    pcm = pad * int(RATE * lead_silence) + pcm + pad * int(RATE * tail_silence)
    frame_bytes = 2 * FRAME_SAMPLES
    if len(pcm) % frame_bytes:
        pcm += bytes(frame_bytes - len(pcm) % frame_bytes)
    if line_noise:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        samples += np.random.default_rng(len(samples)).normal(0.0, line_noise, len(samples))
        pcm = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
    ulaw = ulaw_encode(pcm)
    rng = random.Random(out.name)  # reproducible per file name
    ssrc, seq0, ts0 = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
    start = 1_700_000_000
    chunks = [
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET),
    ]
    for i in range(len(ulaw) // FRAME_SAMPLES):
        marker = 0x80 if i == 0 else 0
        rtp = struct.pack(
            "!BBHII",
            0x80,  # RTP version 2, no padding, extension or CSRCs
            marker | PCMU,
            (seq0 + i) & 0xFFFF,
            (ts0 + i * FRAME_SAMPLES) & 0xFFFFFFFF,
            ssrc,
        )
        packet = _packet(rtp + ulaw[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], src, dst, i)
        micros = i * 20_000
        seconds, micros = start + micros // 1_000_000, micros % 1_000_000
        chunks.append(struct.pack("<IIII", seconds, micros, len(packet), len(packet)) + packet)
    out.write_bytes(b"".join(chunks))
    return len(ulaw) / RATE


def free_udp_port() -> int:
    """A UDP port nothing holds now (SIPp's SIP and media ports are UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def speaking_scenario(
    caller: str, password: str, pcap: Path, *, lead_ms: int, tail_ms: int
) -> Path:
    """``caller_speaks.xml`` filled in, in a fresh directory: the path of the scenario.

    ``tail_ms`` counts from the start of the audio (SIPp replays it in the background):
    shorter than the capture, the caller hangs up mid-sentence.
    """
    text = SCENARIO.read_text()
    for placeholder, value in (
        ("CALLER", caller),
        ("TRUNK_PASSWORD", password),
        ("PCAP_FILE", str(pcap.resolve())),
        ("LEAD_MS", str(lead_ms)),
        ("TAIL_MS", str(tail_ms)),
    ):
        text = text.replace(placeholder, value)
    path = Path(tempfile.mkdtemp(prefix="sipp-speaks-")) / "call.xml"
    path.write_text(text)
    return path


async def speaking_call(
    settings: Settings, caller: str, pcap: Path, *, lead_ms: int, tail_ms: int
) -> None:
    """One SIPp call to the hotline number that speaks ``pcap``; fails if SIPp does."""
    path = speaking_scenario(
        caller, settings.sip_trunk_password, pcap, lead_ms=lead_ms, tail_ms=tail_ms
    )
    errors = path.with_suffix(".err")
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
        str(free_udp_port()),
        "-mp",  # the SDP offer's media port: pcap play sends from it (raw socket: root)
        str(free_udp_port()),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "60s",
        "-trace_err",
        "-error_file",
        str(errors),
        cwd=path.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    detail = errors.read_text()[-2000:] if errors.exists() else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {err.decode()[-500:]} {detail}"
