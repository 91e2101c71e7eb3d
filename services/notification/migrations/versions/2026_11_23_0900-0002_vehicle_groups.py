"""Alert rules may target vehicle groups; alerts keep the vehicle's group of their event.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "alert_rules",
        sa.Column(
            "vehicle_groups",
            postgresql.ARRAY(sa.String(length=60)),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column("alerts", sa.Column("vehicle_group", sa.String(length=60), nullable=True))
    op.create_index(
        "ix_alerts_org_id_vehicle_group_occurred_at",
        "alerts",
        ["org_id", "vehicle_group", "occurred_at"],
        postgresql_where=sa.text("vehicle_group IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_org_id_vehicle_group_occurred_at", table_name="alerts")
    op.drop_column("alerts", "vehicle_group")
    op.drop_column("alert_rules", "vehicle_groups")
