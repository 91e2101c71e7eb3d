"""Alembic environment of the auth service."""

import fleet_auth.models  # noqa: F401 - registers the tables on Base.metadata
from fleet_auth.database import Base
from fleet_common.migrations import run_migrations

run_migrations(Base.metadata, database_url_env="AUTH_DATABASE_URL")
