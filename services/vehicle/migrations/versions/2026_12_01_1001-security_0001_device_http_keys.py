"""Per-device HTTP keys for OsmAnd / Traccar Client ingest.

Devices registered before keys existed have none: they start opted out (visible as
`http_key_required: false` with `http_key_waived_at` set and no `http_key_waived_by`), so an
upgrade does not cut off their positions; rotating their credentials gives them a key.

Revision ID: security_0001
Revises: alerts_0001
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "security_0001"
down_revision: str | None = "alerts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("http_key_hash", sa.String(length=64), nullable=True))
    op.add_column(
        "devices",
        sa.Column("http_key_required", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "devices", sa.Column("http_key_waived_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("devices", sa.Column("http_key_waived_by", sa.UUID(), nullable=True))
    op.execute("UPDATE devices SET http_key_waived_at = now()")
    op.alter_column("devices", "http_key_required", server_default=sa.true())


def downgrade() -> None:
    for column in (
        "http_key_waived_by",
        "http_key_waived_at",
        "http_key_required",
        "http_key_hash",
    ):
        op.drop_column("devices", column)
