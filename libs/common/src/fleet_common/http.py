"""Outgoing HTTP from one service to another, carrying the caller's request id."""

from typing import Any

import httpx

from fleet_common.logging import request_id_var


async def _propagate_request_id(request: httpx.Request) -> None:
    request_id = request_id_var.get()
    if request_id and "x-request-id" not in request.headers:
        request.headers["X-Request-ID"] = request_id


def create_http_client(**kwargs: Any) -> httpx.AsyncClient:
    hooks = kwargs.pop("event_hooks", {})
    hooks.setdefault("request", []).append(_propagate_request_id)
    kwargs.setdefault("timeout", httpx.Timeout(10.0, connect=3.0))
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
