"""The email channel's own tables (migration 0011): the thread index and attachments.

``email_message`` maps every letter in and every reply out (by its ``Message-ID``) to
its conversation, so ``In-Reply-To``/``References`` find the thread, and a letter the
mailbox hands over twice is taken once. ``email_attachment`` lists what a letter
carried; the bytes are sealed files under ``<var>/attachments`` (recordings.sealed).
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint

from hotline.store.models import UTCDateTime

metadata = MetaData()

email_message = Table(
    "email_message",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # sha256 of the normalised Message-ID: fixed width, so any id can be indexed
    Column("key", String(64), nullable=False),
    Column("conversation_id", String(36), nullable=False, index=True),
    Column("direction", String(4), nullable=False),  # in | out
    Column("message_id", String(255), nullable=False),  # as written, without <>
    Column("subject", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("key", name="uq_email_message_key"),
)

email_attachment = Table(
    "email_attachment",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("conversation_id", String(36), nullable=False, index=True),
    Column("letter_id", Integer, nullable=False),  # email_message.id
    Column("filename", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
