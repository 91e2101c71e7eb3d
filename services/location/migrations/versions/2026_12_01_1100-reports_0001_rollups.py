"""Hourly and daily rollups of each vehicle's telemetry, and the buckets they must redo.

An AFTER INSERT statement trigger on `telemetry` marks the hours a batch touched as stale
(late data included), so the writer is unchanged; the location service's rollup job redoes
closed stale hours from raw rows and each day from its hours. Every hour that already has
positions is marked stale here, so existing data is rolled up too.

Revision ID: reports_0001
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "reports_0001"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE telemetry_rollups (
            org_id uuid NOT NULL,
            vehicle_id uuid NOT NULL,
            width_s integer NOT NULL,
            bucket_start timestamptz NOT NULL,
            state jsonb NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_telemetry_rollups PRIMARY KEY (org_id, width_s, vehicle_id, bucket_start),
            CONSTRAINT ck_telemetry_rollups_width CHECK (width_s IN (3600, 86400))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE telemetry_rollups_stale (
            org_id uuid NOT NULL,
            vehicle_id uuid NOT NULL,
            hour_start timestamptz NOT NULL,
            CONSTRAINT pk_telemetry_rollups_stale PRIMARY KEY (org_id, vehicle_id, hour_start)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_telemetry_rollups_stale_hour ON telemetry_rollups_stale (hour_start)"
    )
    # Sorted, so that two writers marking the same hours take their locks in one order.
    op.execute(
        """
        CREATE FUNCTION telemetry_mark_rollups_stale() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
            SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
            FROM new_rows
            WHERE vehicle_id IS NOT NULL
            ORDER BY 1, 2, 3
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER telemetry_rollups_stale AFTER INSERT ON telemetry
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION telemetry_mark_rollups_stale()
        """
    )
    op.execute(
        """
        INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
        SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
        FROM telemetry WHERE vehicle_id IS NOT NULL
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER telemetry_rollups_stale ON telemetry")
    op.execute("DROP FUNCTION telemetry_mark_rollups_stale()")
    op.execute("DROP TABLE telemetry_rollups_stale")
    op.execute("DROP TABLE telemetry_rollups")
