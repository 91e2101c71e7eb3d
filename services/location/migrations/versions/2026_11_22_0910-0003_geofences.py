"""Geofences: polygons and circles as PostGIS geography.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:10:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "geofences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "area",
            geoalchemy2.Geography("POLYGON", srid=4326, spatial_index=False),
            nullable=False,
        ),
        sa.Column(
            "center",
            geoalchemy2.Geography("POINT", srid=4326, spatial_index=False),
            nullable=True,
        ),
        sa.Column("radius_m", sa.Float(), nullable=True),
        sa.Column("speed_limit_kph", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('polygon', 'circle')", name=op.f("ck_geofences_kind")),
        sa.CheckConstraint(
            "(kind = 'circle') = (center IS NOT NULL AND radius_m IS NOT NULL)",
            name=op.f("ck_geofences_circle_fields"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_geofences")),
    )
    op.create_index(op.f("ix_geofences_org_id"), "geofences", ["org_id"])
    op.create_index("ix_geofences_org_id_name", "geofences", ["org_id", "name"])
    op.create_index("ix_geofences_area", "geofences", ["area"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_index("ix_geofences_area", table_name="geofences")
    op.drop_index("ix_geofences_org_id_name", table_name="geofences")
    op.drop_index(op.f("ix_geofences_org_id"), table_name="geofences")
    op.drop_table("geofences")
