"""Prometheus metrics shared by all services, multiprocess-aware for gunicorn."""

import inspect
import os
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from fleet_common.logging import get_logger

log = get_logger(__name__)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests handled, by route template and status code.",
    ["service", "method", "route", "status_code"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to handle an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Under gunicorn every worker has its own pools: the service's figure is their sum.
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool now.",
    ["service", "pool"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "db_pool_connections_max",
    "Most connections the pool will open (its size plus overflow).",
    ["service", "pool"],
    multiprocess_mode="livesum",
)

# Called before each scrape to bring gauges up to date (pool figures, stream lag, ...): a
# figure read when asked costs nothing between scrapes and is never stale.
ScrapeHook = Callable[[], Awaitable[None] | None]


def add_scrape_hook(app, hook: ScrapeHook) -> None:
    app.state.scrape_hooks = [*getattr(app.state, "scrape_hooks", []), hook]


def watch_sqlalchemy_pool(app, service: str, engine: AsyncEngine, max_connections: int) -> None:
    in_use = DB_POOL_IN_USE.labels(service, "sqlalchemy")
    DB_POOL_MAX.labels(service, "sqlalchemy").set(max_connections)
    pool = engine.sync_engine.pool
    add_scrape_hook(app, lambda: in_use.set(pool.checkedout()))


def watch_asyncpg_pool(app, service: str, name: str, pool) -> None:
    """An asyncpg pool (`asyncpg.Pool`): in use = opened minus idle."""
    in_use = DB_POOL_IN_USE.labels(service, name)
    DB_POOL_MAX.labels(service, name).set(pool.get_max_size())
    add_scrape_hook(app, lambda: in_use.set(pool.get_size() - pool.get_idle_size()))


async def run_scrape_hooks(app) -> None:
    for hook in getattr(app.state, "scrape_hooks", []):
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            # A figure that cannot be read now keeps its last value; the scrape still works.
            log.warning("metrics hook failed", hook=getattr(hook, "__name__", ""), error=repr(exc))


def _registry() -> CollectorRegistry:
    # Under gunicorn each worker writes its samples to PROMETHEUS_MULTIPROC_DIR; any worker
    # answering /metrics must aggregate them all.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


metrics_router = APIRouter(include_in_schema=False)


@metrics_router.get("/metrics")
async def metrics(request: Request) -> Response:
    await run_scrape_hooks(request.app)
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
