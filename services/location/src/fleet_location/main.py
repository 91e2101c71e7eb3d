"""The location service app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from fleet_common.app import create_service_app
from fleet_location.config import Settings
from fleet_location.events import create_event_detector
from fleet_location.geofences.router import router as geofences_router


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Vehicle speed limits come from the ingest pipeline's device cache when it provides
    # `app.state.speed_limit_for`; without it only geofence limits apply.
    detector = create_event_detector(
        app.state.settings,
        app.state.redis,
        app.state.sessionmaker,
        getattr(app.state, "speed_limit_for", lambda _device_id: None),
    )
    app.state.geofence_index = detector.geofences
    app.state.position_observers.append(detector)
    detector.start()
    try:
        yield
    finally:
        await detector.stop()
        app.state.position_observers.remove(detector)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        service="location",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
        title="Fleet Tracker location service",
    )
    app.state.position_observers = []
    api = APIRouter(prefix="/api/v1")
    api.include_router(geofences_router)
    app.include_router(api)
    return app
