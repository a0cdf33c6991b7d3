"""agents, acd and handoff

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:10:39.692500
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_unit",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["org_unit.id"], name=op.f("fk_org_unit_parent_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_unit")),
    )
    op.create_table(
        "acd_queue",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("intents", sa.JSON(), nullable=True),
        sa.Column("overflow_to", sa.String(length=64), nullable=True),
        sa.Column("overflow_after", sa.Integer(), nullable=True),
        sa.Column("max_wait", sa.Integer(), nullable=True),
        sa.Column("offer_timeout", sa.Integer(), nullable=False),
        sa.Column("wrap_up", sa.Integer(), nullable=False),
        sa.Column("sticky_window", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_acd_queue_org_unit_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_queue")),
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_app_user_org_unit_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "blacklist",
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_blacklist_contact_id_contact")
        ),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_blacklist")),
    )
    op.create_table(
        "canned_reply",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_unit_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_unit.id"], name=op.f("fk_canned_reply_org_unit_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_reply")),
    )
    op.create_table(
        "acd_agent_status",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("presence", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_acd_agent_status_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_acd_agent_status")),
    )
    op.create_table(
        "acd_contact",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("queue_id", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("arrived_at", sa.DateTime(), nullable=False),
        sa.Column("entered_queue_at", sa.DateTime(), nullable=False),
        sa.Column("visited", sa.JSON(), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("target_agent_id", sa.String(length=36), nullable=True),
        sa.Column("last_agent_id", sa.String(length=36), nullable=True),
        sa.Column("overflowed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_acd_contact_conversation_id_conversation"),
        ),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_acd_contact")),
    )
    op.create_table(
        "acd_queue_member",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("queue_id", sa.String(length=64), nullable=False),
        sa.Column("penalty", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["acd_queue.id"], name=op.f("fk_acd_queue_member_queue_id_acd_queue")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_acd_queue_member_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("user_id", "queue_id", name=op.f("pk_acd_queue_member")),
    )
    op.create_table(
        "user_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_user_session_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_user_session")),
    )
    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_session_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vip", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("org_unit_id", sa.String(length=64), nullable=False, server_default="default")
        )
        batch_op.add_column(sa.Column("intent", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("fields_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("queue_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("agent_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("assigned_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("disposition", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("awaiting_rating", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_conversation_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_conversation_org_unit_id"), ["org_unit_id"], unique=False
        )

    # Zero configuration: one unit and one default queue that new agents join.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    op.bulk_insert(
        sa.table(
            "org_unit",
            sa.column("id", sa.String),
            sa.column("name", sa.String),
            sa.column("parent_id", sa.String),
            sa.column("created_at", sa.DateTime),
        ),
        [
            {
                "id": "default",
                "name": "省级中心 Provincial centre",
                "parent_id": None,
                "created_at": now,
            }
        ],
    )
    op.bulk_insert(
        sa.table(
            "acd_queue",
            sa.column("id", sa.String),
            sa.column("name", sa.String),
            sa.column("org_unit_id", sa.String),
            sa.column("strategy", sa.String),
            sa.column("offer_timeout", sa.Integer),
            sa.column("wrap_up", sa.Integer),
            sa.column("sticky_window", sa.Integer),
            sa.column("is_default", sa.Boolean),
            sa.column("created_at", sa.DateTime),
        ),
        [
            {
                "id": "general",
                "name": "综合 General",
                "org_unit_id": "default",
                "strategy": "longest_idle",
                "offer_timeout": 30,
                "wrap_up": 0,
                "sticky_window": 0,
                "is_default": True,
                "created_at": now,
            }
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversation_org_unit_id"))
        batch_op.drop_index(batch_op.f("ix_conversation_agent_id"))
        batch_op.drop_column("awaiting_rating")
        batch_op.drop_column("rating")
        batch_op.drop_column("disposition")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("assigned_at")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("agent_id")
        batch_op.drop_column("queue_id")
        batch_op.drop_column("fields_sealed")
        batch_op.drop_column("intent")
        batch_op.drop_column("org_unit_id")

    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("vip")

    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_session_user_id"))

    op.drop_table("user_session")
    op.drop_table("acd_queue_member")
    op.drop_table("acd_contact")
    op.drop_table("acd_agent_status")
    op.drop_table("canned_reply")
    op.drop_table("blacklist")
    op.drop_table("app_user")
    op.drop_table("acd_queue")
    op.drop_table("org_unit")
