"""Queries on a recorded route with known answers, and tenant isolation on every query.

The route (one point every 10 s, ignition and speed as a tracker reports them):
  0-600 s     north at 36 km/h, 100 m a point  -> 6,000 m
  610-1200 s  parked, ignition off              -> a 600 s stop
  1210-1500 s east at 72 km/h, 200 m a point   -> 5,800 m
  1510-1800 s standing, ignition on             -> a 290 s stop, 290 s idle
"""

import csv
import io
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fleet_location.positions.model import Position
from fleet_location.trips.detection import EARTH_RADIUS_M

LAT0, LON0 = 0.0, 106.0


def north(lat: float, metres: float) -> float:
    return lat + math.degrees(metres / EARTH_RADIUS_M)


def east(lat: float, lon: float, metres: float) -> float:
    # Inverse haversine along a parallel: exactly `metres` between the two points.
    half = math.asin(math.sin(metres / (2 * EARTH_RADIUS_M)) / math.cos(math.radians(lat)))
    return lon + math.degrees(2 * half)


def route(device, start: datetime) -> list[Position]:
    ids = (uuid.UUID(device.device_id), uuid.UUID(device.vehicle_id), uuid.UUID(device.org_id))
    points = []
    lat, lon = LAT0, LON0
    for i in range(181):
        t = start + timedelta(seconds=10 * i)
        if i <= 60:
            lat_i, lon_i, speed, ignition = north(LAT0, 100 * i), LON0, 36.0, True
            lat = lat_i
        elif i <= 120:
            lat_i, lon_i, speed, ignition = lat, LON0, 0.0, False
        elif i <= 150:
            lon = LON0
            for _ in range(i - 121):
                lon = east(lat, lon, 200)
            lat_i, lon_i, speed, ignition = lat, lon, 72.0, True
        else:
            lat_i, lon_i, speed, ignition = lat, lon, 0.0, True
        points.append(Position(*ids, t, lat_i, lon_i, speed_kph=speed, ignition=ignition))
    return points


@pytest.fixture(scope="module")
def start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1860)


@pytest.fixture(scope="module")
async def recorded(app, org_a, make_device, start):
    device = make_device(org_a)
    points = route(device, start)
    await app.state.ingest.writer.write(points, [])
    await app.state.ingest.live.publish(points)
    return device, points


def window(start: datetime) -> dict:
    return {
        "from": (start - timedelta(minutes=1)).isoformat(),
        "to": (start + timedelta(hours=1)).isoformat(),
    }


async def test_trips(client, org_a, recorded, start):
    device, _ = recorded
    response = await client.get(
        f"/api/v1/vehicles/{device.vehicle_id}/trips",
        params=window(start),
        headers=org_a.headers("viewer"),
    )
    assert response.status_code == 200, response.text
    first, second = response.json()["items"]
    assert first["distance_m"] == pytest.approx(6000, abs=0.5)
    assert first["duration_s"] == 610
    assert first["max_speed_kph"] == 36
    assert first["avg_speed_kph"] == pytest.approx(6000 / 610 * 3.6, rel=1e-4)
    assert first["start"] == {"lat": LAT0, "lon": LON0}
    assert second["distance_m"] == pytest.approx(5800, abs=0.5)
    assert second["duration_s"] == 300
    assert second["max_speed_kph"] == 72
    assert second["start_time"] == (start + timedelta(seconds=1210)).isoformat().replace(
        "+00:00", "Z"
    )


async def test_stops(client, org_a, recorded, start):
    device, _ = recorded
    response = await client.get(
        f"/api/v1/vehicles/{device.vehicle_id}/stops", params=window(start), headers=org_a.headers()
    )
    parked, idle = response.json()["items"]
    assert (parked["duration_s"], parked["ignition_on"]) == (600, False)
    assert parked["place"]["lat"] == pytest.approx(north(LAT0, 6000))
    assert (idle["duration_s"], idle["ignition_on"]) == (290, True)


async def test_summary_json_and_csv(client, org_a, recorded, start):
    device, _ = recorded
    response = await client.get(
        "/api/v1/reports/summary", params=window(start), headers=org_a.headers()
    )
    (row,) = [i for i in response.json()["items"] if i["vehicle_id"] == device.vehicle_id]
    assert row["distance_m"] == pytest.approx(11800, abs=1)
    assert row["driving_s"] == 910
    assert row["idle_s"] == 290
    assert row["max_speed_kph"] == 72
    assert row["avg_speed_kph"] == pytest.approx(11800 / 910 * 3.6, rel=1e-4)
    assert (row["trips"], row["positions"]) == (2, 181)
    exported = await client.get(
        "/api/v1/reports/summary",
        params={**window(start), "format": "csv"},
        headers=org_a.headers(),
    )
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    (mine,) = [r for r in rows if r["vehicle_id"] == device.vehicle_id]
    assert float(mine["driving_s"]) == 910


async def test_history_formats(client, org_a, recorded, start):
    device, points = recorded
    url = f"/api/v1/vehicles/{device.vehicle_id}/history"
    body = (await client.get(url, params=window(start), headers=org_a.headers())).json()
    assert body["downsampled"] is False
    assert len(body["points"]) == 181
    times = [p["recorded_at"] for p in body["points"]]
    assert times == sorted(times)
    assert body["points"][0]["lat"] == LAT0
    assert body["points"][0]["speed_kph"] == 36
    geo = await client.get(
        url, params={**window(start), "format": "geojson"}, headers=org_a.headers()
    )
    assert geo.headers["content-type"] == "application/geo+json"
    features = geo.json()["features"]
    assert len(features) == 181
    assert features[-1]["geometry"]["coordinates"] == [points[-1].lon, points[-1].lat]
    gpx = await client.get(url, params={**window(start), "format": "gpx"}, headers=org_a.headers())
    assert gpx.text.count("<trkpt ") == 181
    assert gpx.text.startswith("<?xml")
    exported = await client.get(
        url, params={**window(start), "format": "csv"}, headers=org_a.headers()
    )
    lines = exported.text.strip().split("\r\n")
    assert lines[0].startswith("recorded_at,lat,lon")
    assert len(lines) == 182


async def test_history_downsampling_keeps_the_corner(client, org_a, recorded, start):
    device, points = recorded
    response = await client.get(
        f"/api/v1/vehicles/{device.vehicle_id}/history",
        params={**window(start), "max_points": 10},
        headers=org_a.headers(),
    )
    body = response.json()
    kept = body["points"]
    assert body["downsampled"] is True
    assert body["total_points"] == 181
    assert 3 <= len(kept) <= 10
    assert kept[0]["recorded_at"] == points[0].recorded_at.isoformat().replace("+00:00", "Z")
    assert kept[-1]["recorded_at"] == points[-1].recorded_at.isoformat().replace("+00:00", "Z")
    corner = north(LAT0, 6000)
    assert any(p["lat"] == pytest.approx(corner) and p["lon"] == LON0 for p in kept)


async def test_latest_with_status_and_nearby(app, client, org_a, org_b, recorded):
    device, points = recorded
    org = uuid.UUID(org_a.org_id)
    now = datetime.now(UTC)
    moving_id, offline_id = uuid.uuid4(), uuid.uuid4()
    await app.state.ingest.live.publish(
        [
            Position(moving_id, None, org, now, 1.0, 1.0, speed_kph=50, ignition=True),
            Position(offline_id, None, org, now - timedelta(hours=1), 1.0, 1.0, speed_kph=50),
        ]
    )
    response = await client.get("/api/v1/positions/latest", headers=org_a.headers("viewer"))
    by_device = {item["device_id"]: item for item in response.json()["items"]}
    assert by_device[device.device_id]["status"] == "stopped"
    assert by_device[str(moving_id)]["status"] == "moving"
    assert by_device[str(offline_id)]["status"] == "offline"
    moving = await client.get(
        "/api/v1/positions/latest", params={"status": "moving"}, headers=org_a.headers()
    )
    moving_ids = {i["device_id"] for i in moving.json()["items"]}
    assert str(moving_id) in moving_ids
    assert not {str(offline_id), device.device_id} & moving_ids

    end = points[-1]
    near = await client.get(
        "/api/v1/positions/nearby",
        params={"lat": end.lat, "lon": end.lon, "radius_m": 100},
        headers=org_a.headers(),
    )
    (item,) = near.json()["items"]
    assert item["device_id"] == device.device_id
    assert item["distance_m"] < 1
    far = await client.get(
        "/api/v1/positions/nearby",
        params={"lat": LAT0, "lon": LON0, "radius_m": 100},
        headers=org_a.headers(),
    )
    assert far.json()["items"] == []
    # The other org sees nothing of it.
    other = await client.get("/api/v1/positions/latest", headers=org_b.headers())
    assert device.device_id not in {i["device_id"] for i in other.json()["items"]}
    other_near = await client.get(
        "/api/v1/positions/nearby",
        params={"lat": end.lat, "lon": end.lon, "radius_m": 1000},
        headers=org_b.headers(),
    )
    assert other_near.json()["items"] == []


async def test_tenant_isolation_on_vehicle_queries(client, org_b, recorded, start):
    device, _ = recorded
    for path in ("history", "trips", "stops"):
        response = await client.get(
            f"/api/v1/vehicles/{device.vehicle_id}/{path}",
            params=window(start),
            headers=org_b.headers(),
        )
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    summary = await client.get(
        "/api/v1/reports/summary", params=window(start), headers=org_b.headers()
    )
    assert device.vehicle_id not in {i["vehicle_id"] for i in summary.json()["items"]}
    filtered = await client.get(
        "/api/v1/reports/summary",
        params={**window(start), "vehicle_id": device.vehicle_id},
        headers=org_b.headers(),
    )
    assert filtered.json()["items"] == []


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/positions/latest", {}, 401),
        ("/api/v1/positions/nearby", {"lat": 100, "lon": 0, "radius_m": 5}, 422),
        ("/api/v1/positions/nearby", {"lat": 0, "lon": 0, "radius_m": -5}, 422),
        ("/api/v1/positions/nearby", {"lat": "x", "lon": 0, "radius_m": 5}, 422),
        ("/api/v1/vehicles/not-a-uuid/history", {}, 422),
        ("/api/v1/vehicles/{vid}/history", {"format": "kml"}, 422),
        ("/api/v1/vehicles/{vid}/history", {"max_points": 1}, 422),
        ("/api/v1/vehicles/{vid}/history", {"from": "2026-01-02", "to": "2026-01-01"}, 422),
        ("/api/v1/vehicles/{vid}/history", {"from": "2020-01-01", "to": "2026-01-01"}, 422),
        ("/api/v1/vehicles/{vid}/trips", {"from": "yesterday"}, 422),
        ("/api/v1/vehicles/00000000-0000-0000-0000-000000000000/stops", {}, 404),
        ("/api/v1/reports/summary", {"format": "pdf"}, 422),
    ],
)
async def test_hostile_queries(client, org_a, recorded, path, params, status):
    device, _ = recorded
    headers = {} if status == 401 else org_a.headers()
    response = await client.get(
        path.replace("{vid}", device.vehicle_id), params=params, headers=headers
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
