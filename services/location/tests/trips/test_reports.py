"""The summary report from rollups, against the raw computation on the same rows (issue 17).

A recorded route two days back: a trip across midnight, a 90-minute park across three hours,
a second trip and some idling. The report over a range with open edges must equal `analyse`
on the raw rows, before the rollups exist, after they are made, after late data for a closed
hour, after a redelivered batch, and after the raw rows are gone (retention).
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


def _raw(points: list[Position]) -> dict:
    fixes = [Fix(p.recorded_at, p.lat, p.lon, p.speed_kph, p.ignition) for p in points]
    summary = analyse(sorted(fixes, key=lambda f: f.recorded_at), **RULES).summary
    return _figures(dataclasses.asdict(summary))


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
    assert expected["trips"] == 2
    # Before any rollup: read raw.
    assert await _report(client, org_a, device.vehicle_id) == expected

    await _roll_up(db)
    # 23:00-02:00 and the two trips' later hours, and the two days they touch.
    counts = await _rollup_rows(db, device.vehicle_id)
    assert counts[86400] == 2
    assert counts[3600] >= 4
    assert await _report(client, org_a, device.vehicle_id) == expected

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
    assert with_late != expected
    assert await _report(client, org_a, device.vehicle_id) == with_late
    await _roll_up(db)
    assert await _report(client, org_a, device.vehicle_id) == with_late

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
    # ... and only what the rollups hold: a range with open edges in those days has no raw rows.
    edge = await _report(
        client, org_a, device.vehicle_id, **{"from": (MIDNIGHT + timedelta(minutes=30)).isoformat()}
    )
    assert edge is None or edge["positions"] < with_late["positions"]


async def test_summary_is_scoped_to_the_org(app, client, db, org_a, org_b, make_device):
    device = make_device(org_a)
    await app.state.ingest.writer.write(_route(device), [])
    await _roll_up(db)
    assert await _report(client, org_b, device.vehicle_id) is None
    assert await _report(client, org_a, device.vehicle_id) is not None


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
    history = await client.get(
        f"/api/v1/vehicles/{uuid.uuid4()}/trips",
        params={"from": (now - timedelta(days=40)).isoformat(), "to": now.isoformat()},
        headers=org_a.headers(),
    )
    assert history.status_code == 422
    assert "raw positions" in history.json()["detail"]
