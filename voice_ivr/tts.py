"""Text to speech for the IVR: telephone-ready WAV files that Asterisk can play.

Every engine returns an 8 kHz, mono, 16-bit PCM ``.wav`` file; Asterisk plays it as
``sound:/path/without/extension`` (see :func:`asterisk_media`). Files are cached by the
hash of everything that shapes the audio, so a prompt is synthesized once and then reused.

:class:`EspeakTts` runs ``espeak-ng -w`` and ``sox`` as subprocesses rather than through
pyttsx3, whose ``save_to_file`` was seen to gain or lose about a second of audio in a
third of repeated runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import uuid
import wave
from pathlib import Path
from typing import Final, Protocol

from hotline.lang import LANGS, Lang

SAMPLE_RATE: Final = 8000
"""Telephone audio: what Asterisk's ``.wav`` format and a G.711 call carry."""

MIN_SECONDS: Final = 0.1
"""A shorter result is treated as a failed synthesis, not as a very short prompt."""

FALLBACK_TEXT: Final[dict[Lang, str]] = {
    "zh": "请稍候，正在为您转接人工服务。",
    "en": "Please hold, we are transferring you to an agent.",
}
"""Played when a prompt cannot be synthesized: the call goes to a person instead."""

_INSTALL_HINT: Final = "install them with: apt-get install -y espeak-ng libespeak-ng1 sox"


class TtsError(RuntimeError):
    """Synthesis failed, timed out, or produced audio that is not usable."""


class TtsEngine(Protocol):
    """What the IVR needs from a speech synthesizer."""

    async def prepare(self) -> None:
        """Check the engine works and render the fallback prompts; call once at start.

        Raises :class:`TtsError` naming what is missing: a service without a working
        synthesizer must not start, because it could not even say "please hold".
        """
        ...

    async def synthesize(self, text: str, lang: Lang) -> Path:
        """Return an 8 kHz mono 16-bit ``.wav`` file speaking ``text``; may be cached."""
        ...

    def fallback_prompt(self, lang: Lang) -> Path:
        """The pre-rendered "please hold, transferring you to an agent" prompt."""
        ...


def asterisk_media(path: Path) -> str:
    """The ARI media URI for a rendered file: Asterisk adds the extension itself."""
    return "sound:" + path.with_suffix("").as_posix()


def check_wav(
    path: Path, *, rate: int | None = SAMPLE_RATE, min_seconds: float = MIN_SECONDS
) -> float:
    """Raise :class:`TtsError` unless ``path`` is mono 16-bit PCM audio; return its seconds.

    ``rate=None`` accepts any sample rate (the synthesizer's own, before conversion).
    """
    try:
        size = path.stat().st_size
        if size <= 44:
            raise TtsError(f"{path.name}: {size} bytes, no audio after the WAV header")
        with wave.open(str(path), "rb") as wav:
            channels, width, framerate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            seconds = wav.getnframes() / framerate
    except (OSError, EOFError, wave.Error) as exc:
        raise TtsError(f"{path.name}: not a readable WAV file ({exc})") from exc
    if (channels, width) != (1, 2) or framerate != (rate or framerate):
        raise TtsError(
            f"{path.name}: {channels} channel(s), {8 * width}-bit, {framerate} Hz; "
            f"expected mono 16-bit {rate or 'any'} Hz"
        )
    if seconds <= min_seconds:
        raise TtsError(f"{path.name}: {seconds:.3f} s of audio, expected more than {min_seconds}")
    return seconds


class EspeakTts:
    """espeak-ng in a subprocess, converted to telephone audio by sox.

    Mandarin uses the ``cmn-latn-pinyin`` voice: espeak-ng 1.51's ``zh``/``cmn`` voices
    read Chinese characters as English-spelled pinyin.
    """

    name: Final = "espeak-ng"
    VOICES: Final[dict[Lang, str]] = {"zh": "cmn-latn-pinyin", "en": "en-us"}

    def __init__(
        self,
        cache_dir: Path,
        rate: int = 150,
        timeout: float = 10.0,
        *,
        espeak: str = "espeak-ng",
        sox: str = "sox",
    ) -> None:
        """``rate`` is in words per minute; ``timeout`` bounds one synthesis, both steps."""
        self.cache_dir = cache_dir
        self.rate = rate
        self.timeout = timeout
        self.espeak = espeak
        self._sox = sox
        self._fallback: dict[Lang, Path] = {}
        # One synthesis per key even when several calls ask for the same prompt at once.
        self._inflight: dict[str, asyncio.Task[Path]] = {}

    async def prepare(self) -> None:
        missing = [tool for tool in (self.espeak, self._sox) if shutil.which(tool) is None]
        if missing:
            raise TtsError(f"text to speech needs {' and '.join(missing)}: {_INSTALL_HINT}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for lang in LANGS:
            try:
                self._fallback[lang] = await self.synthesize(FALLBACK_TEXT[lang], lang)
            except TtsError as exc:
                raise TtsError(
                    f"cannot render the {lang} fallback prompt with espeak-ng and sox "
                    f"(voice {self.VOICES[lang]}): {exc}; check that {_INSTALL_HINT}"
                ) from exc

    def fallback_prompt(self, lang: Lang) -> Path:
        try:
            return self._fallback[lang]
        except KeyError:
            raise RuntimeError("EspeakTts.prepare() must run (and succeed) at start") from None

    def path_for(self, text: str, lang: Lang) -> Path:
        """Where the rendering of ``text`` is (or will be) cached."""
        return self.cache_dir / f"{self._key(text, lang)}.wav"

    async def synthesize(self, text: str, lang: Lang) -> Path:
        if not text.strip():
            raise TtsError("nothing to say: the text is empty")
        key = self._key(text, lang)
        target = self.cache_dir / f"{key}.wav"
        if target.exists():
            return target
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._render(text, lang, target))
            self._inflight[key] = task
            task.add_done_callback(self._settled)
        # Shielded: one caller hanging up must not cancel a synthesis others wait for.
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[Path]) -> None:
        self._inflight = {k: t for k, t in self._inflight.items() if t is not task}
        if not task.cancelled():
            task.exception()  # waiters get it through shield(); don't log it as unretrieved

    def _key(self, text: str, lang: Lang) -> str:
        spec = [self.name, self.VOICES[lang], self.rate, SAMPLE_RATE, text]
        return hashlib.sha256(json.dumps(spec, ensure_ascii=False).encode()).hexdigest()

    async def _render(self, text: str, lang: Lang, target: Path) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Temporary names start with a dot and end in .tmp: never mistaken for a prompt.
        stem = f".{target.stem}.{uuid.uuid4().hex}"
        raw = self.cache_dir / f"{stem}.raw.tmp"
        converted = self.cache_dir / f"{stem}.8k.tmp"
        try:
            async with asyncio.timeout(self.timeout):
                voice = ["-v", self.VOICES[lang], "-s", str(self.rate), "-b", "1"]
                # The text goes on stdin: as an argument, a leading "-" would be an option.
                await _run([self.espeak, *voice, "-w", str(raw)], stdin=text.encode())
                check_wav(raw, rate=None)
                # -R: no random dither, so the same text always gives the same bytes.
                fmt = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
                sox_argv = [self._sox, "-R", "-G", "-t", "wav", str(raw), *fmt]
                await _run([*sox_argv, "-t", "wav", str(converted)])
            check_wav(converted)
            os.replace(converted, target)
        except TimeoutError:
            raise TtsError(f"synthesis took longer than {self.timeout} s") from None
        finally:
            for leftover in (raw, converted):
                leftover.unlink(missing_ok=True)
        return target


async def _run(argv: list[str], stdin: bytes = b"") -> None:
    """Run a tool to completion; kill it if the caller is cancelled or times out."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise TtsError(f"{argv[0]} is not installed: {_INSTALL_HINT}") from None
    try:
        _, err = await proc.communicate(stdin)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip() or "no message"
        raise TtsError(f"{Path(argv[0]).name} exited with {proc.returncode}: {detail}")
