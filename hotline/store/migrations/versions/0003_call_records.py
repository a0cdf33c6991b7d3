"""call records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 22:36:56.109363
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "call_record",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("dialled", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("queue_id", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("wait_seconds", sa.Integer(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("ivr_path", sa.JSON(), nullable=False),
        sa.Column("survey", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_call_record_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_record")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_call_record_channel_id")),
    )
    with op.batch_alter_table("call_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_record_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_call_record_started_at"), ["started_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("call_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_record_started_at"))
        batch_op.drop_index(batch_op.f("ix_call_record_conversation_id"))

    op.drop_table("call_record")
