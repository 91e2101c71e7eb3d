"""The common app skeleton: problem+json errors, request ids, metrics by route template."""

import asyncio
import logging
import re

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from fleet_common.app import create_service_app
from fleet_common.errors import ConflictError
from fleet_common.settings import CommonSettings
from fleet_devstack.servers import free_port


class Thing(BaseModel):
    name: str = Field(max_length=10)
    size_m: float = Field(ge=0)


def build_app() -> FastAPI:
    app = create_service_app(
        service="testsvc", settings=CommonSettings(), verify_tokens=False, title="test"
    )

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.post("/things")
    async def create_thing(thing: Thing) -> Thing:
        if thing.name == "taken":
            raise ConflictError("a thing with this name exists")
        return thing

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-detail at /srv/app.py line 42")

    return app


@pytest.fixture(scope="module")
async def client():
    app = build_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_unexpected_exception_is_a_problem_500_without_internals(client, caplog):
    caplog.set_level(logging.ERROR)
    response = await client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500
    assert body["title"] == "Internal Server Error"
    assert body["request_id"] == "req-boom-1"
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    # ...but the stack trace is logged, with the request id, for the operator.
    logged = [r for r in caplog.records if "unhandled exception" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


async def test_validation_error_is_problem_json_naming_the_field(client):
    response = await client.post("/things", json={"name": "ok", "size_m": -1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["detail"].startswith("size_m:")
    assert body["errors"][0]["loc"] == ["body", "size_m"]


async def test_hostile_input_is_not_echoed(client):
    hostile = "<script>alert(1)</script>" * 10
    response = await client.post("/things", json={"name": hostile, "size_m": 1})
    assert response.status_code == 422
    assert "<script>" not in response.text


@pytest.mark.parametrize(
    "payload", [b"{not json", b"[]", b"\xff\xfe", b'{"name": 1e999999, "size_m": 1}']
)
async def test_malformed_bodies_are_4xx(client, payload):
    response = await client.post(
        "/things", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["status"] == 422


async def test_domain_error_maps_to_status(client):
    response = await client.post("/things", json={"name": "taken", "size_m": 1})
    assert response.status_code == 409
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "a thing with this name exists",
    }


async def test_unknown_route_and_method_are_problem_json(client):
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = await client.delete("/things")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == 405


async def test_request_id_is_kept_or_made(client):
    given = await client.get("/things/1", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/things/1")
    assert len(made.headers["x-request-id"]) == 32
    # An id unsafe to log or echo is replaced, not reflected.
    unsafe = await client.get("/things/1", headers={"X-Request-ID": "a b\tc<script>"})
    assert unsafe.headers["x-request-id"] != "a b\tc<script>"


async def test_metrics_use_the_route_template(client):
    await client.get("/things/41")
    await client.get("/things/42")
    metrics = (await client.get("/metrics")).text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("http_requests_total{")
        and 'route="/things/{thing_id}"' in line
        and 'service="testsvc"' in line
        and 'status_code="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
    assert 'route="/things/41"' not in metrics
    assert "http_request_duration_seconds_bucket{" in metrics


async def test_readiness_names_the_dependency_that_is_down(stack):
    dead_port = free_port()
    for redis_url, status in ((stack.redis.url, 200), (f"redis://127.0.0.1:{dead_port}/0", 503)):
        app = create_service_app(
            service="testsvc", settings=CommonSettings(redis_url=redis_url), verify_tokens=False
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health/liveness")).json() == {"status": "ok"}
                readiness = await client.get("/health/readiness")
        assert readiness.status_code == status
        if status == 503:
            assert readiness.headers["content-type"] == "application/problem+json"
            assert readiness.json()["detail"] == "dependency unavailable: redis"
        else:
            assert readiness.json() == {"status": "ok", "checks": {"redis": "ok"}}


async def test_the_docs_page_loads_nothing_from_the_internet(client):
    page = await client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert len(assets) >= 3, page.text  # script, stylesheet, icon
    for url in assets:
        assert url.startswith("/"), url
        assert (await client.get(url)).status_code == 200, url


async def test_a_draining_instance_is_not_ready_and_closes_every_connection(stack, tmp_path):
    drain_file = tmp_path / "draining"
    settings = CommonSettings(redis_url=stack.redis.url, drain_file=str(drain_file))
    app = create_service_app(service="testsvc", settings=settings, verify_tokens=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            serving = await client.get("/health/readiness")
            assert serving.status_code == 200
            assert "connection" not in serving.headers
            drain_file.touch()  # what the preStop hook does
            for _ in range(100):
                readiness = await client.get("/health/readiness")
                if readiness.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert readiness.status_code == 503
            assert readiness.json()["detail"] == "draining: this instance is stopping"
            assert readiness.headers["connection"] == "close"
            live = await client.get("/health/liveness")  # draining, not dead: no restart
            assert live.status_code == 200
            assert live.headers["connection"] == "close"
