"""Forwarding through a real gateway process: tokens, headers, bodies, failures."""

import uuid

import pytest

from .conftest import is_problem

FORGERIES = ["expired", "tampered", "alg_none", "hs256_public_key", "unknown_kid", "wrong_issuer"]


async def test_auth_flow_through_the_gateway(client):
    email = f"gw-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        "/api/v1/auth/register",
        json={
            "org_name": "Via Gateway",
            "email": email,
            "password": "Fleet-Test-Passw0rd!",
            "full_name": "Gate Keeper",
        },
    )
    assert registered.status_code == 201, registered.text
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "Fleet-Test-Passw0rd!"}
    )
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    out = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": refreshed.json()["refresh_token"]},
        headers=headers,
    )
    assert out.status_code == 204
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.json()["keys"][0]["use"] == "sig"


async def test_headers_the_gateway_sets_come_back_once(client):
    response = await client.get("/.well-known/jwks.json", headers={"X-Request-ID": "one-id"})
    assert response.status_code == 200
    # The auth service sets these too; the client gets the gateway's, one of each.
    assert response.headers.get_list("x-request-id") == ["one-id"]
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) <= 1


async def test_routes_to_the_right_upstream_with_path_and_query_unchanged(client, org, upstreams):
    vehicle = await client.get("/api/v1/vehicles/42?x=1&y=%20z", headers=org.headers("viewer"))
    assert vehicle.json()["upstream"] == "vehicle"
    assert vehicle.json()["path"] == "/api/v1/vehicles/42"
    assert vehicle.json()["query"] == "x=1&y=%20z"
    history = await client.get("/api/v1/vehicles/42/history", headers=org.headers("viewer"))
    assert history.json()["upstream"] == "location"


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_tokens_never_reach_a_service(client, org, bad_tokens, upstreams, kind):
    marker = uuid.uuid4().hex
    response = await client.get(
        "/api/v1/vehicles",
        headers={"Authorization": f"Bearer {bad_tokens(org)[kind]}", "X-Request-ID": marker},
    )
    assert is_problem(response, 401), response.text
    assert all(s["headers"].get("x-request-id") != marker for s in upstreams["vehicle"].seen)


async def test_missing_token_is_401_but_public_paths_pass(client, upstreams):
    assert is_problem(await client.get("/api/v1/positions/latest"), 401)
    osmand = await client.get("/ingest/osmand?id=123456&lat=10.7&lon=106.7&timestamp=1")
    assert osmand.status_code == 200
    assert osmand.json()["upstream"] == "location"
    assert osmand.json()["path"] == "/ingest/osmand"
    assert (await client.get("/health/liveness")).status_code == 200
    # The API docs page (served by the gateway itself; `/` and the dashboard's routes are
    # test_dashboard.py's, and answer 503 until the dashboard is built).
    assert (await client.get("/api/v1/docs")).status_code == 200


async def test_headers_passed_and_hop_by_hop_stripped(client, org):
    response = await client.get(
        "/api/v1/vehicles",
        headers={
            **org.headers("viewer"),
            "X-Request-ID": "trace-123",
            "X-Forwarded-For": "6.6.6.6",
            "Connection": "keep-alive, x-hop-secret",
            "X-Hop-Secret": "do not forward",
            "Keep-Alive": "timeout=5",
            "X-Internal-Token": "spoofed",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        },
    )
    seen = response.json()["headers"]
    assert seen["x-request-id"] == "trace-123"
    assert response.headers["x-request-id"] == "trace-123"
    # uvicorn believes X-Forwarded-For from loopback peers (FORWARDED_ALLOW_IPS), so this
    # loopback client counts as a proxy: the service gets the client's address, one hop.
    assert seen["x-forwarded-for"] == "6.6.6.6"
    assert seen["authorization"].startswith("Bearer ")
    for hop in ("x-hop-secret", "keep-alive", "x-internal-token", "proxy-authorization"):
        assert hop not in seen
    # ...and on the way back.
    assert "x-upstream-private" not in response.headers
    assert "keep-alive" not in response.headers


async def test_security_headers_and_cors(client, org):
    response = await client.get("/api/v1/vehicles", headers=org.headers("viewer"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" in response.headers
    preflight = {
        "Origin": "https://dashboard.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = await client.options("/api/v1/vehicles", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example.com"
    refused = await client.options(
        "/api/v1/vehicles", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = await client.get(
        "/api/v1/vehicles", headers={**org.headers("viewer"), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in simple.headers


async def test_bodies_stream_both_ways(client, org):
    body = b"{" + b" " * 900_000 + b"}"
    up = await client.post(
        "/api/v1/geofences",
        content=body,
        headers={**org.headers(), "Content-Type": "application/json"},
    )
    assert up.json()["body_size"] == len(body)

    async def chunks():
        for _ in range(10):
            yield b"y" * 50_000

    chunked = await client.post("/api/v1/geofences", content=chunks(), headers=org.headers())
    assert chunked.json()["body_size"] == 500_000
    down = await client.get("/api/v1/vehicles/big", headers=org.headers("viewer"))
    assert len(down.content) == 32 * 65536


async def test_oversized_bodies_are_413(client, org, upstreams):
    big = b"x" * (1024 * 1024 + 1)
    declared = await client.post("/api/v1/geofences", content=big, headers=org.headers())
    assert is_problem(declared, 413)

    async def chunks():
        for _ in range(20):
            yield b"z" * 65536  # 1.25 MiB without a Content-Length

    streamed = await client.post("/api/v1/geofences", content=chunks(), headers=org.headers())
    assert is_problem(streamed, 413)


async def test_unreachable_upstream_is_503_naming_it(client, org):
    response = await client.get("/api/v1/alerts", headers=org.headers("viewer"))
    assert is_problem(response, 503)
    assert response.json()["service"] == "notification"
    assert "notification" in response.json()["detail"]


async def test_slow_upstream_is_504_naming_it(client, org):
    response = await client.get("/api/v1/vehicles/slow", headers=org.headers("viewer"))
    assert is_problem(response, 504)
    assert response.json()["service"] == "vehicle"


async def test_an_export_streams_past_the_upstream_timeout_while_bytes_flow(client, org):
    # 8 rows over 3.2 s through a gateway whose upstream timeout is 1 s: the timeout is
    # between reads, so a long export is never cut off while it sends.
    response = await client.get("/api/v1/vehicles/export/trickle", headers=org.headers("viewer"))
    assert response.status_code == 200
    assert response.text == "".join(f"row,{row}\r\n" for row in range(8))


async def test_unknown_paths_are_404(client, org):
    assert is_problem(await client.get("/api/v1/nothing-here", headers=org.headers()), 404)
    assert is_problem(await client.get("/internal/devices", headers=org.headers()), 404)


async def test_readiness_reports_each_upstream(client):
    response = await client.get("/health/readiness")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    checks = body["checks"]
    assert checks["auth"] == "ok"
    assert checks["vehicle"] == "ok"
    assert checks["location"] == "ok"
    assert checks["redis"] == "ok"
    assert checks["notification"].startswith("down")


async def test_viewer_gets_403_from_a_service_behind_the_gateway(client, org):
    response = await client.post(
        "/api/v1/users",
        json={"email": "x@example.com", "password": "Fleet-Test-Passw0rd!", "full_name": "X"},
        headers=org.headers("viewer"),
    )
    assert is_problem(response, 403)


async def test_cross_org_user_is_404_through_the_gateway(client, make_org, org):
    other = make_org()
    response = await client.get(
        f"/api/v1/users/{org.user_ids['dispatcher']}", headers=other.headers()
    )
    assert is_problem(response, 404)


@pytest.mark.parametrize(
    "content",
    [b"{not json", '{"email": "\u202e\u0000@x", "password": 1}'.encode(), b"\xff" * 100],
)
async def test_hostile_bodies_through_the_gateway_are_4xx(client, content):
    response = await client.post(
        "/api/v1/auth/login", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert is_problem(response, response.status_code)
