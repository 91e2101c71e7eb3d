"""The five services, started as real processes against real servers (issue 2)."""

import json
import time
import uuid

import httpx
import pytest

from fleet_devstack.stack import SERVICE_PORTS

BACKENDS = ["auth", "vehicle", "location", "notification"]


def wait_ready(url: str, timeout_s: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{url}/health/readiness", timeout=5)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture(scope="module")
def services(platform):
    return platform.services


@pytest.mark.parametrize("name", [*BACKENDS, "gateway"])
def test_service_is_live_ready_and_exposes_metrics(services, name):
    url = services[name].url
    assert httpx.get(f"{url}/health/liveness").json() == {"status": "ok"}
    readiness = wait_ready(url)
    assert readiness.status_code == 200, readiness.text
    assert readiness.json()["status"] == "ok"
    metrics = httpx.get(f"{url}/metrics").text
    assert f'http_requests_total{{method="GET",route="/health/readiness",service="{name}"' in (
        metrics
    )


@pytest.mark.parametrize("name", [*BACKENDS, "gateway"])
def test_log_lines_are_json_with_the_callers_request_id(services, name):
    request_id = f"trace-{uuid.uuid4().hex}"
    # The gateway documents the whole API under /api/v1 (its `/` belongs to the dashboard).
    path = "/api/v1/openapi.json" if name == "gateway" else "/openapi.json"
    response = httpx.get(f"{services[name].url}{path}", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = services[name].log_path.read_text().splitlines()
        matching = [line for line in lines if request_id in line]
        if matching:
            break
        time.sleep(0.05)
    assert matching, "no log line carries the request id"
    record = json.loads(matching[0])
    assert record["request_id"] == request_id
    assert record["service"] == name
    assert record["route"] == path
    assert record["status"] == 200
    assert record["method"] == "GET"
    assert isinstance(record["duration_ms"], float)
    # Every line the service printed is JSON, uvicorn's own included.
    for line in lines:
        json.loads(line)


def test_readiness_names_the_database_while_its_server_is_down(
    make_stack, migrated_database, run_service, tmp_path
):
    private = make_stack()
    env = private.service_env(
        database_urls={"auth": migrated_database("auth", on=private)},
        service_urls={name: "http://127.0.0.1:9" for name in SERVICE_PORTS},
        keys_dir=tmp_path,
    )
    url = run_service("auth", env).url
    assert wait_ready(url).status_code == 200

    private.postgres.stop()
    try:
        deadline = time.monotonic() + 15
        while (response := httpx.get(f"{url}/health/readiness", timeout=10)).status_code != 503:
            assert time.monotonic() < deadline, "readiness stayed 200 with the database down"
            time.sleep(0.2)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "dependency unavailable: database"
        assert response.json()["checks"]["redis"] == "ok"
        assert httpx.get(f"{url}/health/liveness").status_code == 200
    finally:
        private.postgres.start()
    assert wait_ready(url).status_code == 200
