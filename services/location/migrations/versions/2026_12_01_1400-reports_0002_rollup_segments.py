"""Rollups keep their settled trips and stops, so trip and stop lists of long ranges join
from rollups as the summary does (issue 17).

`telemetry_rollups.segments` holds them, apart from `state` so that the summary, which reads
every vehicle's rollups, does not read them. The states written by reports_0001 know no part
boundaries, so they are dropped and every hour with positions is marked stale: the rollup job
redoes them (reports read raw rows until it has). reports_0001 shipped the same day, so no
rollup yet outlives the raw rows it was made from.

Revision ID: reports_0002
Revises: reports_0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "reports_0002"
down_revision: str | None = "reports_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROP_ROLLUPS_SQL = "DELETE FROM telemetry_rollups"
MARK_ALL_STALE_SQL = """
    INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
    SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
    FROM telemetry WHERE vehicle_id IS NOT NULL
    ON CONFLICT DO NOTHING
"""


def upgrade() -> None:
    op.execute(DROP_ROLLUPS_SQL)
    op.execute("ALTER TABLE telemetry_rollups ADD COLUMN segments jsonb NOT NULL")
    op.execute(MARK_ALL_STALE_SQL)


def downgrade() -> None:
    op.execute(DROP_ROLLUPS_SQL)
    op.execute("ALTER TABLE telemetry_rollups DROP COLUMN segments")
    op.execute(MARK_ALL_STALE_SQL)
