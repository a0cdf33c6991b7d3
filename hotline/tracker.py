"""Purging a conversation's Rasa tracker once its sensitive part is over.

Rasa's SQL tracker store keeps every event in clear, including identity answers and
PINs held in slots. Once a ticket is created (or a status lookup done) the dialogue
state is no longer needed, so the hub deletes that conversation's events; the hub's own
transcript (with sensitive answers sealed) remains the record.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def async_url(tracker_url: str) -> str:
    if tracker_url.startswith("sqlite:"):
        return tracker_url.replace("sqlite:", "sqlite+aiosqlite:", 1)
    return tracker_url.replace("postgresql:", "postgresql+asyncpg:", 1)


class TrackerPurger:
    def __init__(self, tracker_url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(async_url(tracker_url))

    async def purge(self, conversation_id: str) -> int:
        """Delete the conversation's tracker events; returns how many went (0 on failure)."""
        try:
            async with self._engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    await conn.execute(text("PRAGMA secure_delete=ON"))
                result = await conn.execute(
                    text("DELETE FROM events WHERE sender_id = :sender"),
                    {"sender": conversation_id},
                )
        except SQLAlchemyError:
            log.warning("tracker purge failed", extra={"conversation_id": conversation_id})
            return 0
        return int(result.rowcount or 0)

    async def close(self) -> None:
        await self._engine.dispose()
