"""Alembic environment of the location service."""

from fleet_common.migrations import run_migrations
from fleet_location.database import Base

run_migrations(Base.metadata, database_url_env="LOCATION_DATABASE_URL")
