"""Alembic environment of the vehicle service."""

import fleet_vehicle.models  # noqa: F401  (registers every table on Base.metadata)
from fleet_common.migrations import run_migrations
from fleet_vehicle.database import Base

run_migrations(Base.metadata, database_url_env="VEHICLE_DATABASE_URL")
