"""SMS group sends: templates, contact groups and members, sends and their messages

Revision ID: 0005_sms_group_sends
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_sms_group_sends"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_template",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("text_zh", sa.Text(), nullable=True),
        sa.Column("text_en", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_sms_template_org_unit_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_template")),
        sa.UniqueConstraint("org_unit_id", "name", name=op.f("uq_sms_template_org_unit_id")),
    )
    op.create_index(op.f("ix_sms_template_org_unit_id"), "sms_template", ["org_unit_id"])
    op.create_table(
        "sms_group",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_sms_group_org_unit_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_group")),
        sa.UniqueConstraint("org_unit_id", "name", name=op.f("uq_sms_group_org_unit_id")),
    )
    op.create_index(op.f("ix_sms_group_org_unit_id"), "sms_group", ["org_unit_id"])
    op.create_table(
        "sms_group_member",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["sms_group.id"],
            name=op.f("fk_sms_group_member_group_id_sms_group"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_group_member")),
        sa.UniqueConstraint("group_id", "phone", name=op.f("uq_sms_group_member_group_id")),
    )
    op.create_table(
        "sms_send",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("template_name", sa.String(length=100), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("text_zh", sa.Text(), nullable=True),
        sa.Column("text_en", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_sms_send_org_unit_id_org_unit")
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["sms_template.id"],
            name=op.f("fk_sms_send_template_id_sms_template"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_send")),
    )
    op.create_index(op.f("ix_sms_send_org_unit_id"), "sms_send", ["org_unit_id"])
    op.create_index("ix_sms_send_state_due", "sms_send", ["state", "scheduled_at"])
    op.create_table(
        "sms_send_message",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("send_id", sa.String(length=36), nullable=False),
        sa.Column("phone", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("report", sa.String(length=16), nullable=True),
        sa.Column("report_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["sms_send.id"],
            name=op.f("fk_sms_send_message_send_id_sms_send"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_send_message")),
        sa.UniqueConstraint("send_id", "phone", name=op.f("uq_sms_send_message_send_id")),
    )
    op.create_index("ix_sms_send_message_send_state", "sms_send_message", ["send_id", "state"])
    op.create_index("ix_sms_send_message_state", "sms_send_message", ["state"])


def downgrade() -> None:
    op.drop_table("sms_send_message")
    op.drop_table("sms_send")
    op.drop_table("sms_group_member")
    op.drop_table("sms_group")
    op.drop_table("sms_template")
