"""Finished recordings: Asterisk writes plain WAV into its spool; we seal it and file it.

A recording is registered when it starts (who, which call, which queue). When Asterisk
reports ``RecordingFinished`` the WAV is sealed into ``var/recordings`` with the project
key (bound to the recording's id), the plaintext is removed, and the row is completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.store.models import Recording, utcnow
from recordings.sealed import recording_key, seal_and_remove

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    done: asyncio.Event
    auto: bool  # seal when Asterisk finishes; else the call seals it (after transcribing)


class Recorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        spool: Path,
        store: Path,
        secret: bytes,
    ) -> None:
        self._sessions = sessions
        self._spool = spool  # Asterisk's recording directory, as the hub sees it
        self._store = store
        self._key = recording_key(secret)
        self._pending: dict[str, _Pending] = {}

    def path_of(self, row: Recording) -> Path:
        return self.path_of_file(row.file, row.id)

    def path_of_file(self, file: str | None, recording_id: str) -> Path:
        return self._store / (file or f"{recording_id}.hlrec")

    @property
    def key(self) -> bytes:
        return self._key

    async def started(self, *, auto: bool = True, **meta: Any) -> str:
        """Register a recording; returns its id, which is also the name Asterisk uses."""
        row = Recording(**meta)
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
        self._pending[row.id] = _Pending(asyncio.Event(), auto)
        return row.id

    async def wait(self, recording_id: str, timeout: float = 10.0) -> None:
        """Until Asterisk has finished writing the recording (or gave up)."""
        pending = self._pending.get(recording_id)
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.done.wait(), timeout)

    def plain_path(self, recording_id: str) -> Path:
        return self._spool / f"{recording_id}.wav"

    async def on_event(self, event: dict[str, Any]) -> bool:
        """Handle ``RecordingFinished``/``RecordingFailed`` for our recordings."""
        if event.get("type") not in ("RecordingFinished", "RecordingFailed"):
            return False
        name = str((event.get("recording") or {}).get("name", ""))
        pending = self._pending.get(name)
        if pending is None:
            return False
        if not pending.auto:  # the call seals it once it has used the audio
            pending.done.set()
            return True
        if event["type"] == "RecordingFinished":
            await self.finish(name)
        else:
            log.error("recording failed", extra={"recording_id": name})
            self.forget(name)
        return True

    async def finish(self, recording_id: str) -> None:
        """Seal the finished WAV and complete the row (once, whoever asks first)."""
        pending = self._pending.pop(recording_id, None)
        if pending is None:
            return
        try:
            await self._seal(recording_id)
        finally:
            pending.done.set()

    def finished(self, recording_id: str) -> bool:
        pending = self._pending.get(recording_id)
        return pending is None or pending.done.is_set()

    @staticmethod
    def seconds(path: Path) -> float | None:
        return _duration(path) if path.exists() else None

    async def discard(self, recording_id: str) -> None:
        """An empty message: no file, no row."""
        self.forget(recording_id)
        self.plain_path(recording_id).unlink(missing_ok=True)
        async with self._sessions() as session:
            row = await session.get(Recording, recording_id)
            if row is not None:
                await session.delete(row)
                await session.commit()

    def forget(self, recording_id: str) -> None:
        pending = self._pending.pop(recording_id, None)
        if pending is not None:
            pending.done.set()

    async def _seal(self, recording_id: str) -> None:
        source = self.plain_path(recording_id)
        if not source.exists():
            log.error("recording file missing", extra={"recording_id": recording_id})
            return
        duration = await asyncio.to_thread(_duration, source)
        self._store.mkdir(parents=True, exist_ok=True)
        target = self._store / f"{recording_id}.hlrec"
        info = await asyncio.to_thread(
            seal_and_remove, source, target, self._key, aad=recording_id.encode()
        )
        async with self._sessions() as session:
            row = await session.get(Recording, recording_id)
            if row is not None:
                row.ended_at = utcnow()
                row.duration_seconds = duration
                row.size = info.plaintext_size
                row.sha256 = info.sha256
                row.file = target.name
                await session.commit()
        log.info("recording sealed", extra={"recording_id": recording_id, "seconds": duration})


def _duration(path: Path) -> float | None:
    try:
        with wave.open(str(path)) as wav:
            return round(float(wav.getnframes()) / float(wav.getframerate()), 2)
    except (wave.Error, EOFError, OSError):
        return None
