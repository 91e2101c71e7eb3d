"""The auth service app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleet_auth.config import Settings
from fleet_auth.firebase import FirebaseVerifier
from fleet_auth.jwks import router as jwks_router
from fleet_auth.keys import load_key_ring
from fleet_auth.login_limits import LoginLimiter
from fleet_auth.revocation import Revoker
from fleet_auth.sessions.router import router as sessions_router
from fleet_auth.users.router import router as users_router
from fleet_common.app import create_service_app


def _refuse_unsafe_production(settings: Settings) -> None:
    if settings.environment == "production" and settings.firebase_auth_emulator_host:
        raise RuntimeError(
            "FIREBASE_AUTH_EMULATOR_HOST is set: the emulator accepts unsigned tokens, so "
            "production refuses it"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    _refuse_unsafe_production(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        firebase = FirebaseVerifier.from_settings(settings)
        app.state.firebase = firebase
        try:
            yield
        finally:
            if firebase is not None:
                firebase.close()

    app = create_service_app(
        service="auth",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
        title="Fleet Tracker auth service",
    )
    # Loaded while the app is built (after logging is set up, so its messages are JSON):
    # a bad key stops the process at start, saying why.
    app.state.key_ring = load_key_ring(settings)
    app.state.login_limiter = LoginLimiter(
        app.state.redis,
        per_account=settings.login_max_failures_per_account,
        per_address=settings.login_max_failures_per_address,
        window_s=settings.login_failure_window_s,
    )
    app.state.revoker = Revoker(app.state.redis, settings.access_token_ttl_s)
    app.state.firebase = None
    app.include_router(jwks_router)
    app.include_router(sessions_router, prefix="/api/v1")
    app.include_router(users_router, prefix="/api/v1")
    return app
