"""Hearing a caller: the call's audio, live, into a speech recognizer.

Why a snoop channel and chan_websocket, and not something simpler:

* Recording the caller's channel would block every later ``play`` on it until the
  recording ends, and the IVR must speak while it listens (barge-in). A snoop channel
  (``spy=in``: only what the caller sends, never our own prompts) leaves the caller's
  channel free to play.
* externalMedia over RTP can send ``slin16`` to us, but Asterisk silently drops slin16
  coming back, and RTP needs a UDP port per call. chan_websocket (externalMedia with
  ``transport=websocket``) carries little-endian PCM over the ARI HTTP server both
  ways, in 20 ms binary messages (640 bytes of slin16, 320 of slin), and needs no port
  of our own.
* The snoop and the media channel meet in a mixing bridge of their own. An
  externalMedia channel must reach StasisStart (which happens once its WebSocket is
  connected) before it can join a bridge, else 422: so :meth:`CallListener.start`
  waits for the StasisStart events that the app's event handler routes to
  :meth:`CallListener.on_event`.

The rate is the call's, not the model's: the trunk carries G.711 (8 kHz), and asking
Asterisk for slin16 only upsamples it, leaving the band above 4 kHz empty. The
engines handle telephone audio when told it is 8 kHz (PocketSphinx fills that band
with noise for its wideband model); fed the upsampled 16 kHz instead, PocketSphinx
recognized 0 of 5 menu phrases from live calls here, against 5 of 5 at 8 kHz. So
``rate=8000`` (slin) is the default, and 16000 (slin16) is for wideband lines.

The snoop channel enters the app with args ``["snoop"]`` and the media channel with
``["media"]``: an IVR tells them from callers (no args) by that, or simply offers every
event to its listeners' ``on_event`` first.

End of speech is the recognizer's own endpointing (``feed`` returns a final result)
or, as a fallback, ours: about 0.7 s of low energy after speech. Recognition is CPU
work and runs in a worker thread, a batch of frames at a time, so the event loop (and
every other call on it) stays responsive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import numpy as np

from voice_ivr.ari import AriClient, AriError
from voice_ivr.asr import AsrEngine, AsrResult, AsrSession, merge

log = logging.getLogger(__name__)

FORMATS: Final = {8000: "slin", 16000: "slin16"}
"""Sample rate → the Asterisk format chan_websocket sends (16-bit little-endian PCM)."""
FRAME_SECONDS: Final = 0.02  # chan_websocket's frames: 320 bytes of slin, 640 of slin16
SNOOP_ARGS: Final = "snoop"
MEDIA_ARGS: Final = "media"
# Ids of a listener's channels and bridge start so: what a crashed hub left is known.
SNOOP_PREFIX: Final = "snoop-"
MEDIA_PREFIX: Final = "media-"
BRIDGE_PREFIX: Final = "listen-"

_GONE_EVENTS: Final = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})


class ListenerError(RuntimeError):
    """The listening path could not be set up (the caller may already be gone)."""


class _Recognizer:
    """An ASR session fed from worker threads, one batch at a time, finished once.

    The lock orders a feed still running in its thread before a finish requested by a
    cancelled :meth:`CallListener.hear`; after the finish, feeds are ignored.
    """

    def __init__(self, session: AsrSession) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._done = False

    def feed(self, frames: list[bytes]) -> list[AsrResult]:
        with self._lock:
            if self._done:
                return []
            results = []
            for frame in frames:
                result = self._session.feed(frame)
                if result is not None:
                    results.append(result)
            return results

    def finish(self) -> AsrResult | None:
        with self._lock:
            if self._done:
                return None
            self._done = True
            return self._session.finish()


class FillerFilter:
    """Takes out the frames of digital silence Asterisk slips into a caller's audio.

    The audio reaches us paced, 20 ms a frame. When the caller's next packet is late, a
    frame of zeros goes out in its place and the late audio follows it, so a 20 ms hole
    lands in the middle of a word. Found in a failed test: one such frame inside "case
    status", captured from a live call, made pocketsphinx hear "agent" or nothing at 37
    of the 138 places and alignments tried; without it, all were right. A phone's audio
    is hardly ever exactly zero for a whole frame mid-speech (and losing 20 ms of a
    stop's closure harms nothing), so a run of at most ``max_run`` zero frames between
    sounding frames is taken for a filler and dropped. Longer runs (a line that sends
    no audio at all) pass, ``max_run`` frames late.
    """

    def __init__(self, frame_bytes: int, max_run: int = 2) -> None:
        self._zero = bytes(frame_bytes)
        self.max_run = max_run
        self._held: list[bytes] = []
        self._after_sound = False  # the last frame let through was not silence

    def __call__(self, frame: bytes) -> list[bytes]:
        """The frames to pass on now, in order (none while a possible filler is held)."""
        if frame != self._zero:
            self._held.clear()  # a filler: sound on both sides of it
            self._after_sound = True
            return [frame]
        if self._after_sound and len(self._held) < self.max_run:
            self._held.append(frame)
            return []
        out = [*self._held, frame]
        self._held.clear()
        self._after_sound = False
        return out


def frame_rms(frame: bytes) -> float:
    """Root-mean-square level of 16-bit little-endian samples (0 for an empty frame)."""
    samples = np.frombuffer(frame[: len(frame) - len(frame) % 2], dtype="<i2")
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


class CallListener:
    """Hears one caller's channel: a snoop on it, bridged to a chan_websocket channel.

    Use: ``await start(channel_id)`` from the call's own task (not from inside the ARI
    event handler: ``start`` waits for events that handler delivers), route ARI events
    to :meth:`on_event`, then ``await hear(...)`` once per turn, and ``await close()``.
    """

    def __init__(
        self,
        ari: AriClient,
        http: aiohttp.ClientSession,
        ari_url: str,
        auth_header: str,
        app: str,
        *,
        rate: int = 8000,
        voice_rms: float = 300.0,
        end_silence: float = 0.7,
        onset: float = 0.06,
        preroll: float = 0.3,
        setup_timeout: float = 5.0,
    ) -> None:
        """``auth_header``: an ``Authorization`` value (:func:`voice_ivr.ari.basic_auth`).

        ``rate``: 8000 (Asterisk format slin) for narrowband calls, 16000 (slin16) for
        wideband ones; ASR sessions are opened at this rate.

        ``voice_rms`` is the frame level (16-bit units) that counts as voice; speech
        starts after ``onset`` seconds of voiced frames and, failing the recognizer's
        own endpointing, ends after ``end_silence`` seconds of unvoiced ones. Up to
        ``preroll`` seconds heard before :meth:`hear` is called are fed to it too, so a
        caller who starts early keeps the first syllable.
        """
        self._ari = ari
        self._http = http
        self._media_url = ari_url.rstrip("/").replace("http", "ws", 1) + "/media/"
        self._auth = auth_header
        self._app = app
        if rate not in FORMATS:
            raise ValueError(f"rate must be one of {sorted(FORMATS)}, not {rate}")
        self.rate = rate
        self.frame_bytes = rate // 50 * 2
        self.voice_rms = voice_rms
        self.end_silence = end_silence
        self.onset = onset
        self.setup_timeout = setup_timeout

        key = uuid.uuid4().hex[:12]
        self.snoop_id = f"{SNOOP_PREFIX}{key}"
        self.media_id = f"{MEDIA_PREFIX}{key}"
        self.bridge_id = f"{BRIDGE_PREFIX}{key}"
        self.channel_id: str | None = None  # the caller's channel
        self.speech_started = asyncio.Event()
        """Set on the first voiced frame of a :meth:`hear` turn (for barge-in)."""
        self.last_voice_at: float | None = None
        """``time.monotonic()`` of the last voiced frame heard in the current turn."""

        self._in_stasis = {self.snoop_id: asyncio.Event(), self.media_id: asyncio.Event()}
        self._gone = asyncio.Event()  # the snoop (so the caller) or the media path ended
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, round(preroll / FRAME_SECONDS))
        )
        self._hearing = False
        self._closed = False

    @property
    def channel_ids(self) -> frozenset[str]:
        """The listener's own channels (snoop and media), whose events it consumes."""
        return frozenset({self.snoop_id, self.media_id})

    # ----------------------------------------------------------------- set-up
    async def start(self, channel_id: str) -> None:
        """Snoop on ``channel_id`` and connect the audio path; raises :class:`ListenerError`.

        On failure everything created so far is torn down again.
        """
        if self.channel_id is not None:
            raise RuntimeError("a CallListener listens to one channel, once")
        self.channel_id = channel_id
        try:
            await self._connect(channel_id)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, AriError | aiohttp.ClientError | OSError | TimeoutError):
                raise ListenerError(f"cannot listen to {channel_id}: {exc}") from exc
            raise

    async def _connect(self, channel_id: str) -> None:
        await self._ari.request(
            "POST",
            f"/channels/{channel_id}/snoop",
            snoopId=self.snoop_id,
            spy="in",
            app=self._app,
            appArgs=SNOOP_ARGS,
        )
        await self._ari.request(
            "POST", "/bridges", type="mixing", bridgeId=self.bridge_id, name=self.bridge_id
        )
        # ``data`` becomes the channel's Stasis args: StasisStart says ["media"].
        media = await self._ari.request(
            "POST",
            "/channels/externalMedia",
            channelId=self.media_id,
            app=self._app,
            transport="websocket",
            encapsulation="none",
            connection_type="server",
            external_host="INCOMING",
            format=FORMATS[self.rate],
            data=MEDIA_ARGS,
        )
        variables = (media or {}).get("channelvars") or {}
        connection = variables.get("MEDIA_WEBSOCKET_CONNECTION_ID")
        if not connection:
            raise ListenerError("externalMedia gave no MEDIA_WEBSOCKET_CONNECTION_ID")
        self._ws = await self._http.ws_connect(
            self._media_url + str(connection),
            headers={"Authorization": self._auth},
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        )
        self._reader = asyncio.create_task(self._read(self._ws))
        async with asyncio.timeout(self.setup_timeout):
            await asyncio.gather(*(e.wait() for e in self._in_stasis.values()))
        if self._gone.is_set():
            raise ListenerError(f"channel {channel_id} hung up while the listener started")
        await self._ari.request(
            "POST",
            f"/bridges/{self.bridge_id}/addChannel",
            channel=f"{self.snoop_id},{self.media_id}",
        )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Media socket → 20 ms frames: queued while hearing, else kept as pre-roll."""
        carry = b""
        fillers = FillerFilter(self.frame_bytes)
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue  # MEDIA_START and other control text
                data = carry + msg.data
                cut = len(data) - len(data) % self.frame_bytes
                carry = data[cut:]
                for start in range(0, cut, self.frame_bytes):
                    for frame in fillers(data[start : start + self.frame_bytes]):
                        if self._hearing:
                            self._frames.put_nowait(frame)
                        else:
                            self._preroll.append(frame)
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("media socket failed", extra={"error": type(exc).__name__})
        finally:
            self._end_stream()

    def _end_stream(self) -> None:
        """The caller or the media path is gone: wake hear() and a waiting start()."""
        if not self._gone.is_set():
            self._gone.set()
            self._frames.put_nowait(None)
        for started in self._in_stasis.values():
            started.set()  # start() checks _gone once both have "arrived"

    # ----------------------------------------------------------------- events
    async def on_event(self, event: dict[str, Any]) -> bool:
        """Take an ARI event if it concerns the listener's channels or bridge.

        Returns True when it did (the IVR then has nothing more to do with it). Stays
        true for late events (StasisEnd, ChannelDestroyed) after :meth:`close`.
        """
        mine = self.channel_ids
        channel = event.get("channel")
        peer = event.get("peer")  # Dial events name the channel as the peer
        bridge = event.get("bridge")
        ids = {
            str(obj.get("id"))
            for obj in (channel, peer)
            if isinstance(obj, dict) and obj.get("id") is not None
        }
        ours = bool(ids & mine)
        if not ours and isinstance(bridge, dict) and bridge.get("id") == self.bridge_id:
            return True
        if not ours:
            return False
        kind = event.get("type")
        if kind == "StasisStart":
            for channel_id in ids & mine:
                self._in_stasis[channel_id].set()
        elif kind in _GONE_EVENTS:
            self._end_stream()
        return True

    # ----------------------------------------------------------------- hearing
    async def hear(
        self,
        engine: AsrEngine,
        *,
        lang: str,
        grammar: Sequence[str] | None,
        no_input: float,
        max_speech: float,
    ) -> AsrResult | None:
        """One turn: what the caller said, as a final result; ``None`` if they said nothing.

        Returns when the recognizer ends the utterance with a phrase, or after
        ``end_silence`` of quiet following speech, or ``max_speech`` seconds after speech
        began, or when the caller hangs up (with what was heard so far, if anything).
        ``None`` when no speech began within ``no_input`` seconds or the caller was gone
        before speaking. A final with empty text means speech that matched nothing.
        """
        if self._ws is None or self._closed:
            raise RuntimeError("hear() needs a started, open listener")
        if self._hearing:
            raise RuntimeError("hear() is already running on this listener")
        loop = asyncio.get_running_loop()
        self.speech_started.clear()
        self.last_voice_at = None
        # Frames from before this turn: the pre-roll, not a backlog of old audio. From
        # here on frames queue up, so none is lost while the session is made (a new
        # grammar compiles for 0.3 s, and a caller may already be talking).
        while not self._frames.empty():
            self._frames.get_nowait()
        for frame in self._preroll:
            self._frames.put_nowait(frame)
        self._preroll.clear()
        if self._gone.is_set():
            self._frames.put_nowait(None)  # the end-of-stream marker stays last
        self._hearing = True
        try:
            session = await asyncio.to_thread(
                engine.session, rate=self.rate, grammar=grammar, lang=lang
            )
        except BaseException:
            self._hearing = False
            raise
        recognizer = _Recognizer(session)
        finished = False
        try:
            heard: AsrResult | None = None  # a phrase, as the recognizer's endpoint gave it
            finals: list[AsrResult] = []  # endpoints without text: noise, out of grammar
            onset_frames = max(1, round(self.onset / FRAME_SECONDS))
            end_frames = max(1, round(self.end_silence / FRAME_SECONDS))
            voiced_run = quiet_run = 0
            deadline = loop.time() + no_input
            while heard is None:
                frames, ended = await self._batch(deadline - loop.time())
                for frame in frames:
                    if frame_rms(frame) >= self.voice_rms:
                        voiced_run += 1
                        quiet_run = 0
                        self.last_voice_at = time.monotonic()
                        if voiced_run >= onset_frames and not self.speech_started.is_set():
                            self.speech_started.set()
                            deadline = loop.time() + max_speech
                    else:
                        voiced_run = 0
                        quiet_run += 1
                results = await asyncio.to_thread(recognizer.feed, frames) if frames else []
                for result in results:
                    if result.final and result.text:
                        heard = result
                        break
                    if result.final:
                        finals.append(result)
                if self.speech_started.is_set() and quiet_run >= end_frames:
                    break  # our own end of speech: the recognizer did not end it
                if ended or loop.time() >= deadline:
                    break  # hung up, no input, or speech too long
            finished = True
            last = await asyncio.to_thread(recognizer.finish)
            if heard is not None:
                self.speech_started.set()  # quiet speech the energy check missed
                return heard
            merged = merge([*finals, *([last] if last is not None else [])])
            if merged.text or self.speech_started.is_set():
                return merged
            return None
        finally:
            self._hearing = False
            if not finished:
                # Cancelled or failed: release the session without blocking the loop;
                # the lock makes this wait for a feed still running in its thread.
                future = loop.run_in_executor(None, recognizer.finish)
                future.add_done_callback(_log_failure)

    async def _batch(self, timeout: float) -> tuple[list[bytes], bool]:
        """Frames waiting now (at least one, unless ``timeout`` passes), and whether the
        stream has ended."""
        frames: list[bytes] = []
        if self._frames.empty():
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    first = await self._frames.get()
            except TimeoutError:
                return frames, self._gone.is_set()
            if first is None:
                self._frames.put_nowait(None)
                return frames, True
            frames.append(first)
        while not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is None:
                self._frames.put_nowait(None)
                return frames, True
            frames.append(frame)
        return frames, False

    # ----------------------------------------------------------------- closing
    async def close(self) -> None:
        """Hang up the snoop and media channels, destroy the bridge, close the socket.

        Idempotent; a channel or bridge already gone (404) is what we wanted anyway.
        """
        if self._closed:
            return
        self._closed = True
        self._end_stream()
        if self.channel_id is not None:  # start() ran, or began: whatever it made goes
            for channel_id in (self.snoop_id, self.media_id):
                await self._quietly("DELETE", f"/channels/{channel_id}")
            await self._quietly("DELETE", f"/bridges/{self.bridge_id}")
        if self._ws is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _quietly(self, method: str, path: str) -> None:
        try:
            await self._ari.request(method, path)
        except AriError as exc:
            if exc.status != 404:
                log.warning("listener clean-up failed", extra={"path": path, "status": exc.status})
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("listener clean-up failed", extra={"path": path, "error": str(exc)})


def _log_failure(future: asyncio.Future[AsrResult | None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("ASR session did not finish cleanly", exc_info=future.exception())
