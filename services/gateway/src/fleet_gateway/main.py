"""The gateway app: the only public HTTP entry."""

from fastapi import FastAPI

from fleet_common.app import create_service_app
from fleet_gateway.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # The rate limiter fails open, so Redis being down degrades the gateway, not stops it.
    return create_service_app(
        service="gateway", settings=settings, redis_critical=False, title="Fleet Tracker API"
    )
