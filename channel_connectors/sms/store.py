"""The SMS channel's own tables (migrations 0005, 0007, 0009): sends with their delivery reports,
opt-outs, and the buttons last sent per conversation (so a digit reply picks one)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table

from hotline.store.models import UTCDateTime

metadata = MetaData()

sms_outbound = Table(
    "sms_outbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(36), index=True),
    Column("message_id", Integer),  # the transcript line it carries (migration 0009)
    Column("number", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # reply | notice
    Column("author", String(16)),
    Column("chars", Integer, nullable=False),
    Column("segments", Integer, nullable=False),
    Column("encoding", String(8), nullable=False),
    Column("status", String(16), nullable=False),  # sending | sent | failed | suppressed
    Column("error", String(200)),
    Column("dlr_state", String(16)),
    Column("dlr_code", Integer),
    Column("dlr_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

sms_optout = Table(
    "sms_optout",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("keyword", String(16), nullable=False),
    Column("opted_out_at", UTCDateTime(), nullable=False),
)

sms_buttons = Table(
    "sms_buttons",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("buttons", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
