"""Outgoing HTTP from one service to another, carrying the caller's request id."""

from typing import Any

import httpx

from fleet_common.logging import request_id_var

# How long a client keeps an idle connection to another service for reuse. Shorter than the
# servers' own keep-alive timeout (gunicorn's `keepalive`), so a server never closes an idle
# connection the client may be sending on, and than the preStop pause, so a draining instance
# has no idle connection left by the time it stops (fleet_common.drain).
UPSTREAM_KEEPALIVE_S = 3.0


async def _propagate_request_id(request: httpx.Request) -> None:
    request_id = request_id_var.get()
    if request_id and "x-request-id" not in request.headers:
        request.headers["X-Request-ID"] = request_id


def create_http_client(**kwargs: Any) -> httpx.AsyncClient:
    hooks = kwargs.pop("event_hooks", {})
    hooks.setdefault("request", []).append(_propagate_request_id)
    kwargs.setdefault("timeout", httpx.Timeout(10.0, connect=3.0))
    kwargs.setdefault(
        "limits",
        httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=UPSTREAM_KEEPALIVE_S
        ),
    )
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
