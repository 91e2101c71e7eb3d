"""Live positions no longer mark their hour stale one by one: the rollup job marks each hour
once, when it has closed (issue 17, the rollups' cost on the ingest path).

The trigger of reports_0001 marked every (vehicle, hour) of every batch, so each batch of
live positions paid one ON CONFLICT probe per vehicle for marks that were already there
(about a fifth of the INSERT's time). Now the trigger marks only positions recorded before
`marks_from` (late data for an hour already swept); the job's sweep (rollups.sweep) moves
`marks_from` up to the current hour and then marks, in one statement per sweep, every
(vehicle, hour) with positions between `marked_until` and it. The sweep waits for the writers
in flight (they hold the shared advisory lock below until they commit), so that a position
is always either marked by its trigger or committed before the sweep reads the hour. Hours
before `marked_until` are marked or rolled up: readers use rollups only there.

Revision ID: reports_0003
Revises: reports_0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "reports_0003"
down_revision: str | None = "reports_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE telemetry_rollups_sweep (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            marks_from timestamptz NOT NULL,
            marked_until timestamptz NOT NULL
        )
        """
    )
    # Every hour with positions is marked already (reports_0001 marked them all as written).
    op.execute(
        """
        INSERT INTO telemetry_rollups_sweep (marks_from, marked_until)
        VALUES (date_trunc('hour', now(), 'UTC'), date_trunc('hour', now(), 'UTC'))
        """
    )
    # 1700317017 is rollups.SWEEP_LOCK_KEY: writers share it; a sweep moving marks_from
    # takes it alone.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION telemetry_mark_rollups_stale() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            marks_from timestamptz;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(1700317017);
            SELECT s.marks_from INTO marks_from FROM telemetry_rollups_sweep s;
            INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
            SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
            FROM new_rows
            WHERE vehicle_id IS NOT NULL AND recorded_at < marks_from
            ORDER BY 1, 2, 3
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION telemetry_mark_rollups_stale() RETURNS trigger
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
    # The hours not swept yet are not marked: mark them, as reports_0001's trigger had.
    op.execute(
        """
        INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
        SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
        FROM telemetry
        WHERE vehicle_id IS NOT NULL
            AND recorded_at >= (SELECT marked_until FROM telemetry_rollups_sweep)
        ON CONFLICT DO NOTHING
        """
    )
    op.execute("DROP TABLE telemetry_rollups_sweep")
