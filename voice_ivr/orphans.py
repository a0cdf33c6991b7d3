"""Calls a stopped hub left behind: their callers are let go, their records closed.

A call lives as a task in the hub's memory. After a restart nothing drives it: its
caller would hear silence in the Stasis app, and the ACD, which reloads its queue from
the database, would ring agents' phones for a caller nobody can connect. So at start
every call record still open is ended as ``failed``, its channel hung up with the
listener and agent's leg that served it, and its conversation closed through the
``Inbox`` (``end``, which closes it through the ACD; the IVR does the same when a call
ends).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.store.models import CallRecord, utcnow
from voice_ivr.ari import AriClient, AriError
from voice_ivr.listen import BRIDGE_PREFIX, MEDIA_PREFIX, SNOOP_PREFIX

log = logging.getLogger(__name__)


class Ender(Protocol):
    """The part of the ``Inbox`` that closes a conversation whose citizen left."""

    async def end(self, conversation_id: str, disposition: str, *, by: str) -> bool: ...


async def end_orphans(
    ari: AriClient, sessions: async_sessionmaker[AsyncSession], inbox: Ender
) -> int:
    """End the calls that were live when the hub stopped; returns how many."""
    now = utcnow()
    async with sessions() as session:
        orphans = list(
            (
                await session.execute(select(CallRecord).where(CallRecord.ended_at.is_(None)))
            ).scalars()
        )
        for record in orphans:
            record.ended_at = now
            record.disposition = "failed"
            record.ivr_path = [*record.ivr_path, {"at": now.isoformat(), "step": "hub_restarted"}]
        await session.commit()
    with contextlib.suppress(AriError, aiohttp.ClientError, OSError):  # ARI away: no media
        await _clear_media(ari, {record.channel_id for record in orphans})
    for record in orphans:
        if record.conversation_id is not None:
            await inbox.end(record.conversation_id, "failed", by="system")
    if orphans:
        log.warning("calls left by the last run ended", extra={"calls": len(orphans)})
    return len(orphans)


async def _clear_media(ari: AriClient, callers: set[str]) -> None:
    """Hang up the callers, and what served their calls: listeners (a snoop and a media
    channel in a bridge of their own, known by their ids) and bridges with agents' legs."""
    for bridge in await ari.bridges():
        members = {str(c) for c in bridge.get("channels") or ()}
        if str(bridge.get("id", "")).startswith(BRIDGE_PREFIX) or members & callers:
            for channel_id in members:
                await _hang_up(ari, channel_id)
            with contextlib.suppress(AriError):
                await ari.destroy_bridge(str(bridge["id"]))
    for channel in await ari.channels():
        channel_id = str(channel.get("id", ""))
        if channel_id.startswith((SNOOP_PREFIX, MEDIA_PREFIX)):
            await _hang_up(ari, channel_id)
    for channel_id in callers:
        await _hang_up(ari, channel_id)


async def _hang_up(ari: AriClient, channel_id: str) -> None:
    with contextlib.suppress(AriError):  # gone already
        await ari.hangup(channel_id)
