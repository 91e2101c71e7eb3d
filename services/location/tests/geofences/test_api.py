"""`/api/v1/geofences` against real PostGIS, Redis and the auth service's tokens."""

import httpx
import pytest

from fleet_location.config import Settings
from fleet_location.main import create_app

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[106.0, 10.0], [106.01, 10.0], [106.01, 10.01], [106.0, 10.01], [106.0, 10.0]]
    ],
}
CIRCLE = {"type": "Circle", "center": [106.05, 10.005], "radius_m": 300}
CIRCLE_JSON = b'{"type": "Circle", "center": [1, 1], "radius_m": 5}'


@pytest.fixture(scope="module")
async def client(stack, migrated_database, auth_service):
    settings = Settings(
        database_url=migrated_database("location"),
        redis_url=stack.redis.url,
        jwks_url=auth_service.jwks_url,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.app = app
            yield c


@pytest.fixture(scope="module")
def org(make_org):
    return make_org()


@pytest.fixture(scope="module")
def other_org(make_org):
    return make_org()


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


async def test_crud_polygon_and_circle(client, org):
    h = org.headers("dispatcher")
    created = await client.post(
        "/api/v1/geofences",
        headers=h,
        json={"name": "Depot", "geometry": SQUARE, "speed_limit_kph": 20, "colour": "#ff0000"},
    )
    assert created.status_code == 201, created.text
    depot = created.json()
    assert depot["geometry"]["type"] == "Polygon"
    assert depot["geometry"]["coordinates"][0][0] == [106.0, 10.0]
    assert depot["speed_limit_kph"] == 20
    assert depot["active"] is True

    circle = await client.post(
        "/api/v1/geofences", headers=h, json={"name": "Customer", "geometry": CIRCLE}
    )
    assert circle.status_code == 201, circle.text
    assert circle.json()["geometry"] == CIRCLE

    listed = (await client.get("/api/v1/geofences", headers=org.headers("viewer"))).json()
    assert listed["total"] == 2
    assert [g["name"] for g in listed["items"]] == ["Customer", "Depot"]

    patched = await client.patch(
        f"/api/v1/geofences/{depot['id']}",
        headers=h,
        json={"speed_limit_kph": None, "active": False, "geometry": CIRCLE},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["speed_limit_kph"] is None
    assert patched.json()["active"] is False
    assert patched.json()["geometry"]["type"] == "Circle"
    inactive = await client.get("/api/v1/geofences?active=false", headers=h)
    assert [g["id"] for g in inactive.json()["items"]] == [depot["id"]]

    deleted = await client.delete(f"/api/v1/geofences/{depot['id']}", headers=h)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"/api/v1/geofences/{depot['id']}", headers=h), 404)


async def test_tenant_isolation_and_roles(client, org, other_org):
    mine = await client.post(
        "/api/v1/geofences", headers=org.headers(), json={"name": "Mine", "geometry": CIRCLE}
    )
    gid = mine.json()["id"]
    theirs = other_org.headers()
    assert_problem(await client.get(f"/api/v1/geofences/{gid}", headers=theirs), 404)
    assert_problem(
        await client.patch(f"/api/v1/geofences/{gid}", headers=theirs, json={"name": "x"}), 404
    )
    assert_problem(await client.delete(f"/api/v1/geofences/{gid}", headers=theirs), 404)
    listed = (await client.get("/api/v1/geofences", headers=theirs)).json()
    assert gid not in [g["id"] for g in listed["items"]]

    viewer = org.headers("viewer")
    body = {"name": "V", "geometry": CIRCLE}
    assert_problem(await client.post("/api/v1/geofences", headers=viewer, json=body), 403)
    assert_problem(await client.delete(f"/api/v1/geofences/{gid}", headers=viewer), 403)
    assert_problem(await client.get("/api/v1/geofences"), 401)
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert_problem(await client.get("/api/v1/geofences", headers=bad_token), 401)


def _ring(n: int) -> list[list[float]]:
    import math

    ring = [
        [106.0 + 0.01 * math.cos(2 * math.pi * i / n), 10.0 + 0.01 * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return [*ring, ring[0]]


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "Self-intersection",
        ),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "not closed"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "at least 4"),
        ({"type": "Polygon", "coordinates": [_ring(1001)]}, "1001 vertices"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}, "invalid"),
        (
            {"type": "Polygon", "coordinates": [[[0, 95], [1, 0], [1, 1], [0, 95]]]},
            "latitude 95",
        ),
        ({"type": "Polygon", "coordinates": [[[0, 0, 0, 0]]]}, "at most 3"),
        ({"type": "Polygon", "coordinates": []}, "at least 1"),
        ({"type": "Circle", "center": [106.0, 10.0], "radius_m": 0}, "greater than 0"),
        ({"type": "Circle", "center": [106.0, 10.0], "radius_m": -5}, "greater than 0"),
        ({"type": "Circle", "center": [181.0, 10.0], "radius_m": 5}, "longitude 181"),
        ({"type": "Circle", "center": [1.0], "radius_m": 5}, "at least 2"),
        ({"type": "Circle", "center": [1.0, 2.0], "radius_m": 1e9}, "at most"),
        ({"type": "Point", "coordinates": [1, 2]}, "does not match"),
        ({"type": "Circle", "center": ["a", 2], "radius_m": 5}, "valid number"),
        ("POLYGON((0 0,1 0,1 1,0 0))", "valid dictionary"),
    ],
)
async def test_invalid_geometry_is_422_saying_why(client, org, geometry, reason):
    response = await client.post(
        "/api/v1/geofences", headers=org.headers(), json={"name": "bad", "geometry": geometry}
    )
    problem = assert_problem(response, 422)
    assert reason in problem["detail"] or any(reason in e["msg"] for e in problem["errors"])


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"[]",
        b'{"name": "x", "geometry": {"type": "Circle", "center": [NaN, 1], "radius_m": 5}}',
        b'{"name": "x", "geometry": {"type": "Circle", "center": [1, 1], "radius_m": Infinity}}',
        b'{"name": "", "geometry": {"type": "Circle", "center": [1, 1], "radius_m": 5}}',
        b'{"name": "' + b"x" * 201 + b'", "geometry": ' + CIRCLE_JSON + b"}",
        b'{"name": "x", "colour": "red;drop", "geometry": ' + CIRCLE_JSON + b"}",
        b'{"name": "x", "speed_limit_kph": -1, "geometry": ' + CIRCLE_JSON + b"}",
        b'{"name": "x", "extra": 1, "geometry": ' + CIRCLE_JSON + b"}",
    ],
)
async def test_hostile_bodies_are_4xx(client, org, content):
    response = await client.post(
        "/api/v1/geofences",
        headers={**org.headers(), "Content-Type": "application/json"},
        content=content,
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/geofences/not-a-uuid",
        "/api/v1/geofences?limit=0",
        "/api/v1/geofences?limit=100000",
        "/api/v1/geofences?offset=-1",
        "/api/v1/geofences?active=maybe",
        "/api/v1/geofences/00000000-0000-0000-0000-000000000000",
    ],
)
async def test_hostile_queries_are_4xx(client, org, path):
    response = await client.get(path, headers=org.headers())
    assert response.status_code in (404, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
