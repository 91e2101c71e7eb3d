"""The auth service app."""

from fastapi import FastAPI

from fleet_auth.config import Settings
from fleet_common.app import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service_app(
        service="auth",
        settings=settings,
        database_url=settings.database_url,
        title="Fleet Tracker auth service",
    )
