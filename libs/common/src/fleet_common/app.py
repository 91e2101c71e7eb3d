"""The common FastAPI skeleton every service is built on."""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from fleet_common.auth import JWKSCache, RevocationList, TokenVerifier
from fleet_common.db import create_engine, create_sessionmaker, ping_database
from fleet_common.drain import Drain
from fleet_common.errors import install_error_handlers
from fleet_common.health import HealthCheck, health_router
from fleet_common.http import create_http_client
from fleet_common.logging import configure_logging
from fleet_common.metrics import metrics_router, watch_sqlalchemy_pool
from fleet_common.middleware import ObservabilityMiddleware
from fleet_common.redis import create_redis
from fleet_common.settings import CommonSettings
from fleet_common.tasks import stop_tasks

# Per process: under gunicorn, each worker has a pool of its own.
DB_POOL_SIZE = 10
DB_MAX_OVERFLOW = 10

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    *,
    service: str,
    settings: CommonSettings,
    lifespan: Lifespan | None = None,
    health_checks: Sequence[HealthCheck] = (),
    database_url: str | None = None,
    redis_critical: bool = True,
    verify_tokens: bool = True,
    **fastapi_kwargs,
) -> FastAPI:
    """Build a service app with logging, metrics, problem+json errors, health and JWT checks.

    With `database_url`, `app.state.engine` and `app.state.sessionmaker` are set and checked
    by readiness; `app.state.redis` always is. `lifespan` is the service's own start-up and
    shut-down, run inside the common one.
    """
    configure_logging(service, settings.log_level, settings.log_format)
    checks = list(health_checks)
    engine = (
        create_engine(
            database_url,
            pool_size=DB_POOL_SIZE,
            max_overflow=DB_MAX_OVERFLOW,
            pgbouncer=settings.database_pgbouncer,
        )
        if database_url
        else None
    )
    if engine is not None:
        checks.insert(0, HealthCheck("database", lambda: ping_database(engine)))
    redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
    checks.insert(
        1 if engine is not None else 0, HealthCheck("redis", redis.ping, critical=redis_critical)
    )

    drain = Drain(Path(settings.drain_file) if settings.drain_file else None)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.redis_cluster:
            # A cluster client routes every command, pub/sub included, by the slot map it
            # reads here; without it the service does not start (and is restarted).
            await redis.initialize()
        jwks_client = create_http_client(timeout=5.0)
        drain_watch = asyncio.create_task(drain.watch(), name="drain")
        if verify_tokens:
            app.state.token_verifier = TokenVerifier(
                JWKSCache(settings.jwks_url, jwks_client),
                settings.jwt_issuer,
                RevocationList(redis),
            )
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            await stop_tasks([drain_watch])
            await jwks_client.aclose()
            await redis.aclose()
            if engine is not None:
                await engine.dispose()

    # A service's own /docs serves Swagger UI's files itself (fastapi-offline), not from a
    # CDN, so it works on a machine with no internet as the gateway's /api/v1/docs does.
    make_app = FastAPI if fastapi_kwargs.get("docs_url", "/docs") is None else FastAPIOffline
    app = make_app(lifespan=_lifespan, **fastapi_kwargs)
    app.state.settings = settings
    app.state.health_checks = checks
    app.state.drain = drain
    app.state.redis = redis
    if engine is not None:
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        watch_sqlalchemy_pool(app, service, engine, DB_POOL_SIZE + DB_MAX_OVERFLOW)
    app.add_middleware(ObservabilityMiddleware, service=service, drain=drain)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics_router)
    return app
