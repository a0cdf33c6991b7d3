"""ACD routes by media kind: agents' deferred capacity, acd_contact.channel holds the kind

Revision ID: 0006
Revises: 0005_sms_group_sends
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005_sms_group_sends"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Deferred work (email, SMS threads) an agent may hold at once, apart from chats.
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "deferred_capacity", sa.Integer(), nullable=False, server_default=sa.text("10")
            )
        )
    # acd_contact.channel held "chat" or "voice"; it now holds the media kind.
    op.execute("UPDATE acd_contact SET channel = 'realtime' WHERE channel = 'voice'")


def downgrade() -> None:
    op.execute("UPDATE acd_contact SET channel = 'voice' WHERE channel = 'realtime'")
    op.execute("UPDATE acd_contact SET channel = 'chat' WHERE channel = 'deferred'")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("deferred_capacity")
