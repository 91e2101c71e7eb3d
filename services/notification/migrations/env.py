"""Alembic environment of the notification service."""

import fleet_notification.models  # noqa: F401 - registers the tables on Base.metadata
from fleet_common.migrations import run_migrations
from fleet_notification.database import Base

run_migrations(Base.metadata, database_url_env="NOTIFICATION_DATABASE_URL")
