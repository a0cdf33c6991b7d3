"""The audit trail: one row per action on a record. Details must never hold identity."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hotline.store.models import AuditLog


def record(
    session: AsyncSession,
    actor: str,
    action: str,
    record_type: str,
    record_id: str | int,
    **detail: Any,
) -> None:
    session.add(
        AuditLog(
            actor=actor,
            action=action,
            record_type=record_type,
            record_id=str(record_id),
            detail=detail or None,
        )
    )
