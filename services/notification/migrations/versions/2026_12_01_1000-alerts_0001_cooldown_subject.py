"""Cooldowns per rule, vehicle, event type and geofence: a longer subject key.

Revision ID: alerts_0001
Revises: 0003
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "alerts_0001"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows keyed by vehicle alone match no new subject: they only age out, never suppress.
    op.execute("DELETE FROM rule_cooldowns")
    op.alter_column(
        "rule_cooldowns", "subject", type_=sa.String(length=160), existing_nullable=False
    )


def downgrade() -> None:
    op.execute("DELETE FROM rule_cooldowns")
    op.alter_column(
        "rule_cooldowns", "subject", type_=sa.String(length=64), existing_nullable=False
    )
