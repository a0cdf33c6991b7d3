"""sms channel: outbound sends with delivery reports, opt-outs, last buttons

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_outbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=16), nullable=True),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("dlr_state", sa.String(length=16), nullable=True),
        sa.Column("dlr_code", sa.Integer(), nullable=True),
        sa.Column("dlr_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbound")),
    )
    op.create_index(
        op.f("ix_sms_outbound_conversation_id"), "sms_outbound", ["conversation_id"], unique=False
    )
    op.create_table(
        "sms_optout",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("keyword", sa.String(length=16), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_sms_optout")),
    )
    op.create_table(
        "sms_buttons",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("buttons", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_sms_buttons")),
    )


def downgrade() -> None:
    op.drop_table("sms_buttons")
    op.drop_table("sms_optout")
    op.drop_index(op.f("ix_sms_outbound_conversation_id"), table_name="sms_outbound")
    op.drop_table("sms_outbound")
