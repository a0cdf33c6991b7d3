"""The tables of SMS group sends (群发): templates, contact groups, sends and their messages.

They hang off the core's ``Base`` so one Alembic history covers them, but only this
package writes them (through ``ChannelRuntime.sessions`` and the staff API's sessions).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hotline.store.models import Base, UTCDateTime, new_id, utcnow


class SendState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time
    SENDING = "sending"  # due: the scheduler works through its messages
    DONE = "done"  # no message left to hand to Kannel
    CANCELLED = "cancelled"


class MessageState(enum.StrEnum):
    """One recipient's SMS. ``queued → sending → sent → delivered | failed``.

    ``sending`` is committed before the HTTP call to Kannel (the claim), ``sent`` after
    Kannel accepted it. A row still ``sending`` when the hub restarts is ``unknown``: it
    may or may not have reached Kannel, whose sendsms is not idempotent, so it is never
    sent again; a delivery report that arrives later settles it.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # opted out or blacklisted by the time the send started
    CANCELLED = "cancelled"


FINAL_MESSAGE_STATES = frozenset(
    {MessageState.DELIVERED, MessageState.FAILED, MessageState.SKIPPED, MessageState.CANCELLED}
)


class SmsTemplate(Base):
    __tablename__ = "sms_template"
    __table_args__ = (UniqueConstraint("org_unit_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    text_zh: Mapped[str | None] = mapped_column(Text)
    text_en: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsGroup(Base):
    """客户分组: a named list of numbers a send can go to."""

    __tablename__ = "sms_group"
    __table_args__ = (UniqueConstraint("org_unit_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsGroupMember(Base):
    __tablename__ = "sms_group_member"
    __table_args__ = (UniqueConstraint("group_id", "phone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("sms_group.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(24))
    name: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    # Placeholder values for this member ({"case_code": "..."}).
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsSend(Base):
    """One group send: the texts as they were when it was created, and when it goes."""

    __tablename__ = "sms_send"
    __table_args__ = (Index("ix_sms_send_state_due", "state", "scheduled_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"), index=True)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_template.id", ondelete="SET NULL")
    )
    template_name: Mapped[str] = mapped_column(String(100))
    group_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    text_zh: Mapped[str | None] = mapped_column(Text)
    text_en: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=SendState.SCHEDULED.value)
    scheduled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(Integer, default=0)
    excluded: Mapped[int] = mapped_column(Integer, default=0)  # opted out / blacklisted at creation
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))


class SmsSendMessage(Base):
    """One recipient of a send, rendered when the send was created."""

    __tablename__ = "sms_send_message"
    __table_args__ = (
        UniqueConstraint("send_id", "phone"),
        Index("ix_sms_send_message_send_state", "send_id", "state"),
        Index("ix_sms_send_message_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    send_id: Mapped[str] = mapped_column(ForeignKey("sms_send.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(24))
    name: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=MessageState.QUEUED.value)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    report: Mapped[str | None] = mapped_column(String(16))  # the last delivery report's state
    report_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(200))
