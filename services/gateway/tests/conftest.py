"""A real gateway process in front of the real auth service and two local stand-in upstreams.

The vehicle and location stand-ins are tiny ASGI apps served by uvicorn in the test loop:
they echo what reached them (path, headers, body size) so tests can see what the gateway
forwarded, and can be slow (`/slow`) or stream a large body (`/big`). Notification points
at a port nobody listens on.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from fleet_devstack.servers import free_port


@dataclass
class Upstream:
    name: str
    url: str = ""
    seen: list[dict] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body_size = 0
        while True:
            message = await receive()
            body_size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if not path.startswith("/health"):
            self.seen.append({"path": path, "headers": headers, "body_size": body_size})
        if path.endswith("/slow"):
            await asyncio.sleep(3)
        if path.endswith("/trickle"):
            # An export that takes longer than the gateway's upstream timeout, bytes all along.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/csv")],
                }
            )
            for row in range(8):
                await send(
                    {"type": "http.response.body", "body": b"row,%d\r\n" % row, "more_body": True}
                )
                await asyncio.sleep(0.4)
            await send({"type": "http.response.body", "body": b""})
            return
        if path.endswith("/big"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            for _ in range(32):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = json.dumps(
            {
                "upstream": self.name,
                "path": path,
                "query": scope["query_string"].decode(),
                "method": scope["method"],
                "body_size": body_size,
                "headers": headers,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"connection", b"keep-alive, x-upstream-private"),
                    (b"x-upstream-private", b"secret"),
                    (b"keep-alive", b"timeout=5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _serve(app: Upstream) -> tuple[uvicorn.Server, asyncio.Task]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            # Unbounded by default: a response the gateway stopped reading (a client that
            # gave up on `/big`) would hold the session's end forever.
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
        await asyncio.sleep(0.02)
    app.url = f"http://127.0.0.1:{port}"
    return server, task


@pytest.fixture(scope="session")
async def upstreams() -> AsyncIterator[dict[str, Upstream]]:
    apps = {name: Upstream(name) for name in ("vehicle", "location")}
    servers = [await _serve(app) for app in apps.values()]
    yield apps
    for server, task in servers:
        server.should_exit = True
        await task


def gateway_env(stack, auth_service, upstreams, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": auth_service.jwks_url,
        "INTERNAL_SERVICE_TOKEN": auth_service.internal_token,
        "GATEWAY_AUTH_URL": auth_service.url,
        "GATEWAY_VEHICLE_URL": upstreams["vehicle"].url,
        "GATEWAY_LOCATION_URL": upstreams["location"].url,
        "GATEWAY_NOTIFICATION_URL": f"http://127.0.0.1:{free_port()}",
        "GATEWAY_UPSTREAM_TIMEOUT_S": "1",
        "GATEWAY_CORS_ORIGINS": '["https://dashboard.example.com"]',
        "GATEWAY_WS_PING_INTERVAL_S": "1",
        "GATEWAY_WS_AUTH_TIMEOUT_S": "2",
        **extra,
    }


@pytest.fixture(scope="session")
def gateway(stack, auth_service, upstreams, run_service):
    return run_service("gateway", gateway_env(stack, auth_service, upstreams))


@pytest.fixture
async def client(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def org(make_org):
    return make_org()


def is_problem(response: httpx.Response, status: int) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and body["status"] == status
        and {"type", "title", "detail"} <= body.keys()
    )
