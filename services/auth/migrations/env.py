"""Alembic environment of the auth service."""

from fleet_auth.database import Base
from fleet_common.migrations import run_migrations

run_migrations(Base.metadata, database_url_env="AUTH_DATABASE_URL")
