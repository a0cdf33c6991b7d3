"""agent phones, call recordings, office hours messages

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sip_ha1", sa.String(length=64), nullable=True))
    with op.batch_alter_table("call_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_record_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_call_record_queue_id"), ["queue_id"], unique=False)
    op.create_table(
        "recording",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("ticket_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("queue_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("file", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_record.id"], name=op.f("fk_recording_call_id_call_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording")),
    )
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recording_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_recording_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_recording_agent_id"), ["agent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_agent_id"))
        batch_op.drop_index(batch_op.f("ix_recording_started_at"))
        batch_op.drop_index(batch_op.f("ix_recording_call_id"))
    op.drop_table("recording")
    with op.batch_alter_table("call_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_record_queue_id"))
        batch_op.drop_index(batch_op.f("ix_call_record_agent_id"))
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("sip_ha1")
