"""Liveness and readiness endpoints.

Readiness runs every declared dependency check concurrently with a short timeout. A failing
critical dependency turns it 503 and names the dependency; a failing non-critical one
(e.g. Redis for the gateway, whose rate limiter fails open) leaves it 200 but `degraded`.
A draining instance (fleet_common.drain) is not ready, whatever its dependencies.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleet_common.errors import PROBLEM_JSON


@dataclass(frozen=True)
class HealthCheck:
    name: str
    check: Callable[[], Awaitable[object]]
    critical: bool = True


async def _run(check: HealthCheck, timeout_s: float) -> str | None:
    """None when healthy, else a short reason."""
    try:
        async with asyncio.timeout(timeout_s):
            await check.check()
    except TimeoutError:
        return "timed out"
    except Exception as exc:
        return type(exc).__name__
    return None


health_router = APIRouter(prefix="/health", tags=["health"])


@health_router.get("/liveness")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/readiness")
async def readiness(request: Request) -> JSONResponse:
    if request.app.state.drain.active:
        # Stopping soon (fleet_common.drain): out of every load balancer's rotation.
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "draining: this instance is stopping",
        }
        return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)
    checks: list[HealthCheck] = request.app.state.health_checks
    timeout_s: float = request.app.state.settings.health_check_timeout_s
    failures = await asyncio.gather(*(_run(c, timeout_s) for c in checks))
    results = {c.name: (f"down: {f}" if f else "ok") for c, f in zip(checks, failures, strict=True)}
    down = [c.name for c, f in zip(checks, failures, strict=True) if f and c.critical]
    degraded = [c.name for c, f in zip(checks, failures, strict=True) if f and not c.critical]
    if down:
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": f"dependency unavailable: {', '.join(down)}",
            "checks": results,
        }
        return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)
    return JSONResponse({"status": "degraded" if degraded else "ok", "checks": results})
