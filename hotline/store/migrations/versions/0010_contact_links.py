"""One citizen across channels: a contact's person, its phone key, links and proofs.

Revision ID: 0010
Revises: 0009

Existing contacts on the two phone channels of the time (``voice`` and ``sms``) get
their normalised number (the same rule as ``hotline.contacts.phone_key``); they join
each other's person the next time one of them opens a conversation.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_NUMBER = re.compile(r"^\+?\d{3,20}$")
_MAINLAND = re.compile(r"^(?:0086|86)(1\d{10})$")


def _phone_key(raw: str) -> str | None:
    # A copy, so the migration means the same forever: hotline.contacts.phone_key.
    value = re.sub(r"[\s()-]", "", raw)
    if not _NUMBER.match(value):
        return None
    digits = value.lstrip("+")
    mainland = _MAINLAND.match(digits)
    return mainland.group(1) if mainland else digits


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch:
        batch.add_column(sa.Column("person_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("phone_key", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_contact_person_id"), ["person_id"], unique=False)
        batch.create_index(batch.f("ix_contact_phone_key"), ["phone_key"], unique=False)

    op.create_table(
        "contact_link",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=36), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("ended", sa.String(length=16), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_contact_link_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_link")),
    )
    with op.batch_alter_table("contact_link", schema=None) as batch:
        batch.create_index(batch.f("ix_contact_link_contact_id"), ["contact_id"], unique=False)
        batch.create_index(batch.f("ix_contact_link_person_id"), ["person_id"], unique=False)

    op.create_table(
        "contact_proof",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_contact_proof_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_proof")),
    )
    with op.batch_alter_table("contact_proof", schema=None) as batch:
        batch.create_index(batch.f("ix_contact_proof_contact_id"), ["contact_id"], unique=False)
        batch.create_index(
            batch.f("ix_contact_proof_conversation_id"), ["conversation_id"], unique=False
        )
        batch.create_index(batch.f("ix_contact_proof_created_at"), ["created_at"], unique=False)

    contact = sa.table(
        "contact",
        sa.column("id", sa.String()),
        sa.column("channel", sa.String()),
        sa.column("external_id", sa.String()),
        sa.column("phone_key", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(contact.c.id, contact.c.external_id).where(
            contact.c.channel.in_(("voice", "sms"))
        )
    ).all()
    for contact_id, external_id in rows:
        key = _phone_key(external_id)
        if key is not None:
            conn.execute(sa.update(contact).where(contact.c.id == contact_id).values(phone_key=key))


def downgrade() -> None:
    with op.batch_alter_table("contact_proof", schema=None) as batch:
        batch.drop_index(batch.f("ix_contact_proof_created_at"))
        batch.drop_index(batch.f("ix_contact_proof_conversation_id"))
        batch.drop_index(batch.f("ix_contact_proof_contact_id"))
    op.drop_table("contact_proof")
    with op.batch_alter_table("contact_link", schema=None) as batch:
        batch.drop_index(batch.f("ix_contact_link_person_id"))
        batch.drop_index(batch.f("ix_contact_link_contact_id"))
    op.drop_table("contact_link")
    with op.batch_alter_table("contact", schema=None) as batch:
        batch.drop_index(batch.f("ix_contact_phone_key"))
        batch.drop_index(batch.f("ix_contact_person_id"))
        batch.drop_column("phone_key")
        batch.drop_column("person_id")
