"""The location service app."""

from fastapi import FastAPI

from fleet_common.app import create_service_app
from fleet_location.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service_app(
        service="location",
        settings=settings,
        database_url=settings.database_url,
        title="Fleet Tracker location service",
    )
