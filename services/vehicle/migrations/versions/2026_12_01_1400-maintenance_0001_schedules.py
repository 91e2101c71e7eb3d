"""Maintenance schedules per vehicle (by odometer km or engine hours), and the vehicle's
engine hours.

Revision ID: maintenance_0001
Revises: security_0001
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "maintenance_0001"
down_revision: str | None = "security_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "vehicles",
        sa.Column("engine_hours", sa.Double(), nullable=False, server_default="0"),
    )
    op.create_check_constraint(op.f("ck_vehicles_engine_hours"), "vehicles", "engine_hours >= 0")
    op.create_table(
        "maintenance_schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("vehicle_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("meter", sa.String(length=16), nullable=False),
        sa.Column("interval", sa.Double(), nullable=False),
        sa.Column("next_due", sa.Double(), nullable=False),
        sa.Column("last_serviced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_serviced_reading", sa.Double(), nullable=True),
        sa.Column("last_serviced_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("interval > 0", name=op.f("ck_maintenance_schedules_interval")),
        sa.CheckConstraint("next_due >= 0", name=op.f("ck_maintenance_schedules_next_due")),
        sa.ForeignKeyConstraint(
            ["vehicle_id"],
            ["vehicles.id"],
            name=op.f("fk_maintenance_schedules_vehicle_id_vehicles"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_schedules")),
    )
    op.create_index("ix_maintenance_schedules_vehicle_id", "maintenance_schedules", ["vehicle_id"])


def downgrade() -> None:
    op.drop_index("ix_maintenance_schedules_vehicle_id", table_name="maintenance_schedules")
    op.drop_table("maintenance_schedules")
    op.drop_constraint(op.f("ck_vehicles_engine_hours"), "vehicles", type_="check")
    op.drop_column("vehicles", "engine_hours")
