"""A bounded dead-letter table for fleet:events entries the consumer gave up on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("event_type", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_dead_letters")),
    )
    op.create_index(
        "ix_event_dead_letters_org_id_created_at",
        "event_dead_letters",
        ["org_id", "created_at"],
    )
    op.create_index("ix_event_dead_letters_created_at", "event_dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_event_dead_letters_created_at", table_name="event_dead_letters")
    op.drop_index("ix_event_dead_letters_org_id_created_at", table_name="event_dead_letters")
    op.drop_table("event_dead_letters")
