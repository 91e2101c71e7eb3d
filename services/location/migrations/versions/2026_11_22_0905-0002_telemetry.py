"""Telemetry (partitioned by day), the dead-letter store, and the downsampling function.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The primary key doubles as the (device, time) uniqueness that makes a redelivered
    # message a no-op, and as the index for a device's time-range reads. It must include the
    # partition key, which it does. No spatial index: radius queries go to Redis' geo set.
    op.execute(
        """
        CREATE TABLE telemetry (
            device_id uuid NOT NULL,
            recorded_at timestamptz NOT NULL,
            org_id uuid NOT NULL,
            vehicle_id uuid,
            received_at timestamptz NOT NULL DEFAULT now(),
            geog geography(Point, 4326) NOT NULL,
            speed_kph double precision,
            heading_deg double precision,
            altitude_m double precision,
            accuracy_m double precision,
            battery_pct double precision,
            ignition boolean,
            odometer_km double precision,
            attrs jsonb,
            CONSTRAINT pk_telemetry PRIMARY KEY (device_id, recorded_at)
        ) PARTITION BY RANGE (recorded_at)
        """
    )
    op.execute(
        "CREATE INDEX ix_telemetry_org_vehicle_time ON telemetry (org_id, vehicle_id, recorded_at)"
    )
    op.execute(
        """
        CREATE TABLE telemetry_rejections (
            id bigint GENERATED ALWAYS AS IDENTITY,
            received_at timestamptz NOT NULL DEFAULT now(),
            source text NOT NULL,
            reason text NOT NULL,
            device_uid text,
            org_id uuid,
            detail text NOT NULL,
            payload bytea NOT NULL,
            CONSTRAINT pk_telemetry_rejections PRIMARY KEY (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_telemetry_rejections_org_id_id ON telemetry_rejections (org_id, id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS telemetry_rejections")
    op.execute("DROP TABLE IF EXISTS telemetry")
