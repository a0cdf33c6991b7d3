"""The relational model. One schema for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class ConversationState(enum.StrEnum):
    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    # No agent came in time: the citizen's next message becomes a ticket.
    LEAVE_MESSAGE = "leave_message"
    CLOSED = "closed"


class AuthorKind(enum.StrEnum):
    CITIZEN = "citizen"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"
    NOTE = "note"  # staff-only (transfer notes); never shown to the citizen


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    EDITOR = "editor"
    ADMIN = "admin"


class TicketKind(enum.StrEnum):
    REPORT = "report"
    COMPLAINT = "complaint"
    APPEAL = "appeal"
    COMPENSATION = "compensation"
    MESSAGE = "message"  # left for a callback when no agent was free


class TicketStatus(enum.StrEnum):
    RECEIVED = "received"
    UNDER_REVIEW = "under_review"
    ACCEPTED = "accepted"
    TRANSFERRED = "transferred"
    NOT_ACCEPTED = "not_accepted"
    CONCLUDED = "concluded"


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}  # noqa: RUF012


class Contact(Base):
    """A citizen as known on one channel (a chat browser, a phone number, a mailbox)."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # One citizen across channels (hotline.contacts, migration 0010): contacts sharing a
    # person id are one person; None is a person of its own. ``phone_key`` is the number
    # of a contact on a phone channel, normalised, so voice and SMS find each other.
    person_id: Mapped[str | None] = mapped_column(String(36), index=True)
    phone_key: Mapped[str | None] = mapped_column(String(32), index=True)


class ContactLink(Base):
    """How a contact came to be part of a person, and whether that was undone.

    A contact has at most one open row (``ended`` None): the one for its current person.
    ``how`` is ``phone`` (the same number on voice and SMS), ``proof`` (the citizen typed
    a code sent to the other address) or ``supervisor``. Ended rows stay as the record; an
    undone ``phone`` row keeps the automatic join from redoing it.
    """

    __tablename__ = "contact_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contact.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(36), index=True)
    how: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The conversation the link was made from (a proof's, or the one a supervisor named).
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    # undone (staff took it apart), alone (its person has no one else left) or merged
    # (its person joined another one); None while it holds.
    ended: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    ended_by: Mapped[str | None] = mapped_column(String(64))


class ContactProof(Base):
    """A code sent to an address the citizen says is theirs, waiting to be typed back.

    Only an HMAC of the code is kept. The address is kept until the proof is settled
    (needed to find or create its contact), then cleared.
    """

    __tablename__ = "contact_proof"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contact.id"), index=True)
    conversation_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # the address kind: phone, email
    channel: Mapped[str] = mapped_column(String(32))  # the channel the code went out on
    address: Mapped[str | None] = mapped_column(String(254))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    # open, linked, failed (not sent), expired, exhausted (too many tries), replaced
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[dt.datetime] = mapped_column()


class Conversation(Base):
    __tablename__ = "conversation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contact.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    state: Mapped[str] = mapped_column(String(16), default=ConversationState.BOT.value)
    handoff_reason: Mapped[str | None] = mapped_column(String(64))
    resume_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    expect_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    org_unit_id: Mapped[str] = mapped_column(String(64), default="default", index=True)
    # Handoff context: the last detected intent, and the form fields the bot had
    # collected, sealed (they may hold identity) and opened only for the agent console.
    intent: Mapped[str | None] = mapped_column(String(64))
    fields_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    queue_id: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    queued_at: Mapped[dt.datetime | None] = mapped_column()
    assigned_at: Mapped[dt.datetime | None] = mapped_column()
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    disposition: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(Integer)
    awaiting_rating: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (UniqueConstraint("conversation_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    author: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    # Identity answers are stored encrypted here; ``text`` then holds a placeholder.
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    buttons: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    client_id: Mapped[str | None] = mapped_column(String(64))
    handled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReporterIdentity(Base):
    """Name, phone and ID number of a named reporter: one AES-GCM blob, never plaintext."""

    __tablename__ = "reporter_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.RECEIVED.value)
    case_code: Mapped[str] = mapped_column(String(16), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(128))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    identity_id: Mapped[str | None] = mapped_column(ForeignKey("reporter_identity.id"))
    # The named reporter asked for an SMS when the case changes (kept outside the vault, so
    # deciding whether to send reveals nothing).
    notify_reporter: Mapped[bool] = mapped_column(Boolean, default=False)
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversation.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    reply_due: Mapped[dt.date] = mapped_column(Date)
    result_due: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditLog(Base):
    """Who did what to which record, and when. Never holds identity values."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class LookupThrottle(Base):
    """Failed case-status lookups per key (a case code digest or a conversation)."""

    __tablename__ = "lookup_throttle"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[dt.datetime | None] = mapped_column()
    locked_until: Mapped[dt.datetime | None] = mapped_column()


class OrgUnit(Base):
    """A province-level centre, or a city-level unit below one."""

    __tablename__ = "org_unit"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("org_unit.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"))
    display_name: Mapped[str | None] = mapped_column(String(100))
    capacity: Mapped[int] = mapped_column(Integer, default=3)  # chats at once
    # Deferred work (email, SMS threads) at once; apart from chats (migration 0006).
    deferred_capacity: Mapped[int] = mapped_column(Integer, default=10)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The agent's phone: MD5(endpoint:realm:password), what Asterisk's digest auth needs;
    # the password itself is shown once and never stored.
    sip_ha1: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UserSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie value is stored."""

    __tablename__ = "user_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("app_user.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Queue(Base):
    """A skill group. Routing picks the most specific queue for intent, language and unit."""

    __tablename__ = "acd_queue"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"))
    strategy: Mapped[str] = mapped_column(String(20), default="longest_idle")
    language: Mapped[str | None] = mapped_column(String(8))
    intents: Mapped[list[str] | None] = mapped_column(JSON)
    overflow_to: Mapped[str | None] = mapped_column(String(64))
    overflow_after: Mapped[int | None] = mapped_column(Integer)
    max_wait: Mapped[int | None] = mapped_column(Integer)
    offer_timeout: Mapped[int] = mapped_column(Integer, default=30)
    wrap_up: Mapped[int] = mapped_column(Integer, default=0)
    sticky_window: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QueueMember(Base):
    __tablename__ = "acd_queue_member"

    user_id: Mapped[str] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("acd_queue.id"), primary_key=True)
    penalty: Mapped[int] = mapped_column(Integer, default=0)
    # [{"weekdays": [0..6], "start": "09:00", "end": "17:00"}]; empty or null = always.
    schedule: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)


class AgentStatus(Base):
    """An agent's chosen presence, restored after a restart."""

    __tablename__ = "acd_agent_status"

    user_id: Mapped[str] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    presence: Mapped[str] = mapped_column(String(16), default="offline")
    reason: Mapped[str | None] = mapped_column(String(64))
    since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered: Mapped[int] = mapped_column(Integer, default=0)


class AcdContact(Base):
    """A conversation inside ACD (waiting or assigned); the row goes when it leaves."""

    __tablename__ = "acd_contact"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), primary_key=True)
    queue_id: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str] = mapped_column(String(8), default="chat")
    arrived_at: Mapped[dt.datetime] = mapped_column()
    entered_queue_at: Mapped[dt.datetime] = mapped_column()
    visited: Mapped[list[str]] = mapped_column(JSON)
    agent_id: Mapped[str | None] = mapped_column(String(36))
    target_agent_id: Mapped[str | None] = mapped_column(String(36))
    last_agent_id: Mapped[str | None] = mapped_column(String(36))
    overflowed: Mapped[bool] = mapped_column(Boolean, default=False)


class Blacklist(Base):
    """Contacts refused service (abusive callers). Keyed by contact id."""

    __tablename__ = "blacklist"

    contact_id: Mapped[str] = mapped_column(ForeignKey("contact.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CannedReply(Base):
    __tablename__ = "canned_reply"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_unit_id: Mapped[str] = mapped_column(ForeignKey("org_unit.id"))
    language: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)


class CallRecord(Base):
    """The CDR of one call, with every IVR step the caller took (timestamps included)."""

    __tablename__ = "call_record"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String(64))
    dialled: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contact.id"))
    conversation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    queue_id: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    wait_seconds: Mapped[int | None] = mapped_column(Integer)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    disposition: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    # [{"at": iso, "step": "menu", "value": "case_status"}, ...]; never identity or PINs.
    ivr_path: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    survey: Mapped[int | None] = mapped_column(Integer)


class Recording(Base):
    """A recorded call (``kind`` conversation) or spoken message (``kind`` message).

    The audio lives sealed under ``var/recordings`` (see ``recordings.sealed``); the row is
    what search and access checks read.
    """

    __tablename__ = "recording"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_record.id"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    ticket_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    queue_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    file: Mapped[str | None] = mapped_column(String(200))
