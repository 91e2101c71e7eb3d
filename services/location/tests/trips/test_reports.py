"""Reports from rollups, against the raw computation on the same rows (issue 17).

A recorded route two days back: a trip across midnight, a 90-minute park across three hours,
a second trip and some idling. The summary, the trips and the stops over a range with open
edges must equal `analyse` on the raw rows, before the rollups exist, after they are made,
after late data for a closed hour, after a redelivered batch, and after the raw rows are gone
(retention); so must a long range's downsampled history equal each hour's first and last
position.
"""

import dataclasses
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fleet_location.positions.model import Position
from fleet_location.trips.detection import EARTH_RADIUS_M, Fix, analyse
from fleet_location.trips.rollup import Rules
from fleet_location.trips.rollups import redo_stale

RULES = dict(stop_speed_kph=3.0, min_stop_duration_s=180.0)
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
FROM = MIDNIGHT - timedelta(days=1, hours=3, minutes=7)  # an open edge at each end


def _route(device) -> list[Position]:
    ids = (uuid.UUID(device.device_id), uuid.UUID(device.vehicle_id), uuid.UUID(device.org_id))
    points, t, lat, lon = [], MIDNIGHT - timedelta(minutes=20), 0.0, 106.0
    legs = [  # (seconds, speed km/h, ignition, heading: 0 north / 90 east)
        (1800, 36.0, True, 0),  # 23:40 -> 00:10 across midnight
        (5400, 0.0, False, 0),  # parked 90 minutes, across 01:00 and 02:00
        (1200, 72.0, True, 90),
        (300, 0.0, True, 0),  # idling
    ]
    for seconds, speed, ignition, heading in legs:
        for _ in range(seconds // 10):
            points.append(Position(*ids, t, lat, lon, speed_kph=speed, ignition=ignition))
            step_m = speed / 3.6 * 10
            if heading == 0:
                lat += math.degrees(step_m / EARTH_RADIUS_M)
            else:
                lon += math.degrees(step_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
            t += timedelta(seconds=10)
    return points


def _analysis(points: list[Position]):
    fixes = [Fix(p.recorded_at, p.lat, p.lon, p.speed_kph, p.ignition) for p in points]
    return analyse(sorted(fixes, key=lambda f: f.recorded_at), **RULES)


def _raw(points: list[Position]) -> dict:
    return _figures(dataclasses.asdict(_analysis(points).summary))


def _raw_lists(points: list[Position]) -> dict:
    analysis = _analysis(points)
    return {
        "trips": [_trip(dataclasses.asdict(t)) for t in analysis.trips],
        "stops": [_stop(dataclasses.asdict(s)) for s in analysis.stops],
    }


def _moment(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _trip(values: dict) -> dict:
    return {
        **values,
        "start_time": _moment(values["start_time"]),
        "end_time": _moment(values["end_time"]),
        "distance_m": pytest.approx(values["distance_m"], abs=1e-3),
        "avg_speed_kph": pytest.approx(values["avg_speed_kph"], abs=1e-6),
    }


def _stop(values: dict) -> dict:
    return {
        **values,
        "start_time": _moment(values["start_time"]),
        "end_time": _moment(values["end_time"]),
    }


async def _lists(client, org, vehicle_id: str, **params) -> dict:
    """The vehicle's trips and stops through the API, over the report's range."""
    found = {}
    for kind, shape in (("trips", _trip), ("stops", _stop)):
        response = await client.get(
            f"/api/v1/vehicles/{vehicle_id}/{kind}",
            params={"from": FROM.isoformat(), "to": datetime.now(UTC).isoformat(), **params},
            headers=org.headers("viewer"),
        )
        assert response.status_code == 200, response.text
        found[kind] = [shape(item) for item in response.json()["items"]]
    return found


def _figures(values: dict) -> dict:
    return {
        "distance_m": pytest.approx(values["distance_m"], abs=1e-3),
        "driving_s": pytest.approx(values["driving_s"], abs=1e-6),
        "idle_s": pytest.approx(values["idle_s"], abs=1e-6),
        "max_speed_kph": values["max_speed_kph"],
        "avg_speed_kph": pytest.approx(values["avg_speed_kph"], abs=1e-6),
        "trips": values["trips"],
        "positions": values["positions"],
    }


async def _report(client, org, vehicle_id: str, **params) -> dict | None:
    response = await client.get(
        "/api/v1/reports/summary",
        params={"from": FROM.isoformat(), "to": datetime.now(UTC).isoformat(), **params},
        headers=org.headers("viewer"),
    )
    assert response.status_code == 200, response.text
    rows = [row for row in response.json()["items"] if row["vehicle_id"] == vehicle_id]
    return _figures(rows[0]) if rows else None


async def _roll_up(db) -> None:
    rules = Rules(**RULES)
    async with db.acquire() as conn:
        while await redo_stale(conn, rules):
            pass


async def _rollup_rows(db, vehicle_id: str) -> dict[int, int]:
    rows = await db.fetch(
        "SELECT width_s, count(*) FROM telemetry_rollups WHERE vehicle_id = $1 GROUP BY 1",
        uuid.UUID(vehicle_id),
    )
    return dict(rows)


async def test_summary_from_rollups_equals_the_raw_computation(app, client, db, org_a, make_device):
    device = make_device(org_a)
    points = _route(device)
    await app.state.ingest.writer.write(points, [])
    expected = _raw(points)
    listed = _raw_lists(points)
    assert expected["trips"] == 2
    assert len(listed["stops"]) == 2
    # Before any rollup: read raw.
    assert await _report(client, org_a, device.vehicle_id) == expected
    assert await _lists(client, org_a, device.vehicle_id) == listed

    await _roll_up(db)
    # 23:00-02:00 and the two trips' later hours, and the two days they touch.
    counts = await _rollup_rows(db, device.vehicle_id)
    assert counts[86400] == 2
    assert counts[3600] >= 4
    assert await _report(client, org_a, device.vehicle_id) == expected
    assert await _lists(client, org_a, device.vehicle_id) == listed

    # Late data for a closed hour: read raw until redone, then redone; the same either way.
    late = Position(
        uuid.UUID(device.device_id),
        uuid.UUID(device.vehicle_id),
        uuid.UUID(device.org_id),
        MIDNIGHT + timedelta(hours=3, seconds=5),
        points[-1].lat,
        points[-1].lon,
        speed_kph=0.0,
        ignition=True,
    )
    await app.state.ingest.writer.write([late], [])
    stale = await db.fetchval(
        "SELECT count(*) FROM telemetry_rollups_stale WHERE vehicle_id = $1",
        uuid.UUID(device.vehicle_id),
    )
    assert stale >= 1
    with_late = _raw([*points, late])
    listed_late = _raw_lists([*points, late])
    assert with_late != expected
    assert listed_late != listed  # the idle stop grows past 03:00
    assert await _report(client, org_a, device.vehicle_id) == with_late
    assert await _lists(client, org_a, device.vehicle_id) == listed_late
    await _roll_up(db)
    assert await _report(client, org_a, device.vehicle_id) == with_late
    assert await _lists(client, org_a, device.vehicle_id) == listed_late

    # A redelivered batch stores nothing and marks nothing stale.
    await app.state.ingest.writer.write(points[:500], [])
    assert not await db.fetchval(
        "SELECT count(*) FROM telemetry_rollups_stale WHERE vehicle_id = $1 AND hour_start < $2",
        uuid.UUID(device.vehicle_id),
        MIDNIGHT + timedelta(days=1),
    )

    # Raw rows dropped (retention): the closed days still report the same.
    await db.execute("DELETE FROM telemetry WHERE vehicle_id = $1", uuid.UUID(device.vehicle_id))
    assert await _report(client, org_a, device.vehicle_id) == with_late
    assert await _lists(client, org_a, device.vehicle_id) == listed_late
    # ... and only what the rollups hold: a range with open edges in those days has no raw rows.
    edge = await _report(
        client, org_a, device.vehicle_id, **{"from": (MIDNIGHT + timedelta(minutes=30)).isoformat()}
    )
    assert edge is None or edge["positions"] < with_late["positions"]


async def test_reports_are_scoped_to_the_org(app, client, db, org_a, org_b, make_device):
    device = make_device(org_a)
    await app.state.ingest.writer.write(_route(device), [])
    await _roll_up(db)
    assert await _report(client, org_b, device.vehicle_id) is None
    assert await _report(client, org_a, device.vehicle_id) is not None
    for kind in ("trips", "stops", "history"):
        response = await client.get(
            f"/api/v1/vehicles/{device.vehicle_id}/{kind}",
            params={"from": FROM.isoformat(), "max_points": 100} if kind == "history" else {},
            headers=org_b.headers(),
        )
        assert response.status_code == 404, (kind, response.text)


async def test_a_long_history_is_downsampled_from_hourly_rollups(
    app, client, db, org_a, make_device
):
    device = make_device(org_a)
    points = _route(device)
    await app.state.ingest.writer.write(points, [])
    await _roll_up(db)
    hours: dict[datetime, list[Position]] = {}
    for point in points:
        hours.setdefault(point.recorded_at.replace(minute=0, second=0), []).append(point)
    ends = [p for hour in sorted(hours) for p in (hours[hour][0], hours[hour][-1])]
    expected = [(p.recorded_at, p.lat, p.lon, p.speed_kph, p.ignition) for p in ends]
    now = datetime.now(UTC)
    params = {"from": (now - timedelta(days=200)).isoformat(), "to": now.isoformat()}
    url = f"/api/v1/vehicles/{device.vehicle_id}/history"

    async def route(max_points: int) -> tuple[dict, list]:
        response = await client.get(
            url, params={**params, "max_points": max_points}, headers=org_a.headers()
        )
        assert response.status_code == 200, response.text
        body = response.json()
        kept = [
            (_moment(p["recorded_at"]), p["lat"], p["lon"], p["speed_kph"], p["ignition"])
            for p in body["points"]
        ]
        return body, kept

    body, kept = await route(100)
    assert (body["sampling"], body["downsampled"], body["total_points"]) == (
        "hourly",
        True,
        len(points),
    )
    assert kept == expected
    assert body["points"][0]["heading_deg"] is None
    # Fewer points than hour ends: the shape's ends survive.
    _, thinned = await route(3)
    assert len(thinned) <= 3
    assert (thinned[0], thinned[-1]) == (expected[0], expected[-1])
    # From the rollups alone: the same without the raw rows.
    await db.execute("DELETE FROM telemetry WHERE vehicle_id = $1", uuid.UUID(device.vehicle_id))
    assert (await route(100))[1] == expected


async def test_a_year_of_summary_and_longer_refused(client, org_a):
    now = datetime.now(UTC)
    year = await client.get(
        "/api/v1/reports/summary",
        params={"from": (now - timedelta(days=366)).isoformat(), "to": now.isoformat()},
        headers=org_a.headers(),
    )
    assert year.status_code == 200, year.text
    too_long = await client.get(
        "/api/v1/reports/summary",
        params={"from": (now - timedelta(days=400)).isoformat(), "to": now.isoformat()},
        headers=org_a.headers(),
    )
    assert too_long.status_code == 422
    assert "366 days" in too_long.json()["detail"]
    year = {"from": (now - timedelta(days=366)).isoformat(), "to": now.isoformat()}
    longer = {"from": (now - timedelta(days=400)).isoformat(), "to": now.isoformat()}
    # Trips and stops of a year are answered (a vehicle unknown to the org: 404, not 422).
    for kind in ("trips", "stops"):
        url = f"/api/v1/vehicles/{uuid.uuid4()}/{kind}"
        assert (await client.get(url, params=year, headers=org_a.headers())).status_code == 404
        refused = await client.get(url, params=longer, headers=org_a.headers())
        assert refused.status_code == 422
        assert "366 days" in refused.json()["detail"]
    # Raw positions: 31 days; downsampled from rollups: a year.
    history = f"/api/v1/vehicles/{uuid.uuid4()}/history"
    raw = await client.get(history, params=year, headers=org_a.headers())
    assert raw.status_code == 422
    assert raw.headers["content-type"] == "application/problem+json"
    assert "31 days where raw positions are returned" in raw.json()["detail"]
    assert "max_points" in raw.json()["detail"]
    sampled = await client.get(history, params={**year, "max_points": 500}, headers=org_a.headers())
    assert sampled.status_code == 404
