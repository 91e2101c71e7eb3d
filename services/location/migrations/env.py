"""Alembic environment of the location service."""

import fleet_location.geofences.models
import fleet_location.ingest.models
import fleet_location.positions.models  # noqa: F401 - registers the tables on Base.metadata
from fleet_common.migrations import run_migrations
from fleet_location.database import Base

run_migrations(Base.metadata, database_url_env="LOCATION_DATABASE_URL")
