"""The gateway app: the only public HTTP entry."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route

from fleet_common.app import create_service_app
from fleet_common.health import HealthCheck
from fleet_common.tasks import stop_tasks
from fleet_gateway import api_docs
from fleet_gateway.config import Settings
from fleet_gateway.dashboard import Dashboard
from fleet_gateway.live import LiveHub, live_socket
from fleet_gateway.proxy import Forwarder, create_upstreams
from fleet_gateway.rate_limit import RateLimiter
from fleet_gateway.revocations import RevocationWatch
from fleet_gateway.security_headers import SecurityHeadersMiddleware
from fleet_gateway.token_cache import CachingTokenVerifier

PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _upstream_check(app: FastAPI, name: str) -> HealthCheck:
    async def check() -> None:
        response = await app.state.upstreams[name].get("/health/readiness")
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"readiness {response.status_code}", request=response.request, response=response
            )

    # Not critical: with one service down the gateway still serves the others (and answers
    # 503 naming the missing one); failing readiness would take the whole API offline.
    return HealthCheck(name, check, critical=False)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # httpx logs every upstream call at INFO; our access log already has one line per request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    upstream_names = list(settings.upstream_urls())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstreams = create_upstreams(settings)
        app.state.combined_openapi = api_docs.CombinedOpenAPI(
            app.state.upstreams, settings.openapi_cache_s
        )
        common = app.state.token_verifier
        app.state.token_verifier = CachingTokenVerifier(
            common.jwks, common.issuer, common.revocations
        )
        app.state.live_hub = LiveHub(
            app.state.redis,
            batch_window_s=settings.ws_batch_window_s,
            batch_max_positions=settings.ws_batch_max_positions,
        )
        app.state.revocation_watch = RevocationWatch(app.state.redis, common.revocations)
        watcher = asyncio.create_task(app.state.revocation_watch.run(), name="revocations")
        try:
            yield
        finally:
            await stop_tasks([watcher])
            await app.state.rate_limiter.close()
            await app.state.live_hub.close()
            for upstream in app.state.upstreams.values():
                await upstream.aclose()

    app: FastAPI
    # The rate limiter fails open, so Redis being down degrades the gateway, not stops it.
    app = create_service_app(
        service="gateway",
        settings=settings,
        redis_critical=False,
        lifespan=lifespan,
        health_checks=[],
        title="Fleet Tracker API",
        # The gateway documents the whole API at /api/v1/docs (api_docs), not itself at /docs.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.health_checks.extend(_upstream_check(app, name) for name in upstream_names)
    app.state.rate_limiter = RateLimiter(app.state.redis)
    app.add_api_websocket_route("/api/v1/ws", live_socket)
    app.include_router(api_docs.router)
    app.router.routes.append(Mount(api_docs.DOCS_ASSETS_PATH, api_docs.docs_assets()))
    # Last, so the gateway's own routes (health, metrics, docs, WebSocket) match first; what
    # the routing table does not claim is the dashboard's.
    app.router.routes.append(
        Route(
            "/{path:path}",
            Forwarder(fallback=Dashboard(settings.dashboard_dir)),
            methods=PROXIED_METHODS,
            include_in_schema=False,
        )
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=PROXIED_METHODS,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )
    return app
