"""Hour rollups computed in the database (rollups.HOUR_PARTS_SQL, the rollup job's and the
stale hours' path) equal `analyse` on the same positions, once joined: random routes stored in
`telemetry`, rolled up hour by hour from the table, against the raw computation. And the
marks that say which hours to redo: live positions get theirs from the job's sweep once their
hour has closed, late ones from the trigger."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_location.ingest.partitions import ensure_partitions
from fleet_location.trips.detection import Fix, analyse
from fleet_location.trips.rollup import Rules
from fleet_location.trips.rollups import SWEEP_SQL, hour_rollups, sweep

from .test_rollup import RULES, _figures, _listed, _segments, drives

# Three days back, on the hour: closed hours in partitions the table may not have yet.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
INSERT_SQL = """
INSERT INTO telemetry (device_id, recorded_at, org_id, vehicle_id, geog, speed_kph, ignition)
SELECT $1, t, $2, $3, ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, speed, ignition
FROM unnest($4::timestamptz[], $5::float8[], $6::float8[], $7::float8[], $8::bool[])
    AS x(t, lat, lon, speed, ignition)
"""


@pytest.fixture(scope="module")
async def partitioned(db):
    async with db.acquire() as conn:
        await ensure_partitions(conn, BASE.date(), (BASE + timedelta(days=4)).date())
    return db


def _stored(fixes: list[Fix], offset_s: int) -> list[Fix]:
    """The route moved into the table's time, one position a moment (its key)."""
    moved: list[Fix] = []
    shift = BASE + timedelta(seconds=offset_s) - fixes[0].recorded_at
    for fix in fixes:
        at = fix.recorded_at + shift
        if not moved or at > moved[-1].recorded_at:
            moved.append(Fix(at, fix.lat, fix.lon, fix.speed_kph, fix.ignition))
    return moved


@settings(max_examples=80, deadline=None)
@given(drives(), st.integers(0, 3599))
async def test_hour_rollups_in_the_database_equal_the_raw_analysis(partitioned, route, offset_s):
    fixes = _stored(route, offset_s)
    org_id, vehicle_id = uuid.uuid4(), uuid.uuid4()
    rules = Rules(**RULES)
    async with partitioned.acquire() as conn:
        await conn.execute(
            INSERT_SQL,
            uuid.uuid4(),
            org_id,
            vehicle_id,
            [f.recorded_at for f in fixes],
            [f.lat for f in fixes],
            [f.lon for f in fixes],
            [f.speed_kph for f in fixes],
            [f.ignition for f in fixes],
        )
        try:
            hours = sorted({(vehicle_id, f.recorded_at.replace(minute=0, second=0)) for f in fixes})
            async with conn.transaction():
                rollups = await hour_rollups(conn, rules, org_id, hours)
        finally:
            await conn.execute("DELETE FROM telemetry WHERE org_id = $1", org_id)
            await conn.execute("DELETE FROM telemetry_rollups_stale WHERE org_id = $1", org_id)
    assert sorted(rollups) == hours
    for (_, hour), rollup in rollups.items():
        within = [f for f in fixes if hour <= f.recorded_at < hour + timedelta(hours=1)]
        assert (rollup.first, rollup.last, rollup.positions) == (within[0], within[-1], len(within))
    joined = rules.join_all([rollups[key] for key in hours])
    raw = analyse(fixes, **RULES)
    assert _figures(rules.summary(joined)) == _figures(raw.summary)
    assert rules.stopped_s(joined) == pytest.approx(sum(s.duration_s for s in raw.stops))
    assert _listed(rules, joined) == _segments(raw.trips, raw.stops)


async def _marks(conn, org_id) -> list[tuple]:
    rows = await conn.fetch(
        "SELECT vehicle_id, hour_start FROM telemetry_rollups_stale WHERE org_id = $1", org_id
    )
    return sorted(tuple(row) for row in rows)


async def test_live_hours_are_marked_by_the_sweep_and_late_positions_by_the_trigger(partitioned):
    org_id, vehicle_id, device_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with partitioned.acquire() as conn:
        marks_from, _ = await conn.fetchrow(SWEEP_SQL)
        # An hour the sweep has not reached stands for the open hour (the current one may be
        # reached by then: the job sweeps as the hour turns).
        hour = max(BASE + timedelta(days=3, hours=2), marks_from)
        times = [hour + timedelta(minutes=m) for m in range(1, 11)]
        args = (device_id, org_id, vehicle_id, times[:-1], *([v] * 9 for v in (10.0, 106.0)))
        try:
            await conn.execute(INSERT_SQL, *args, [40.0] * 9, [True] * 9)
            assert await _marks(conn, org_id) == []  # batches of live positions mark nothing
            await sweep(conn, until=hour + timedelta(hours=1))
            assert await _marks(conn, org_id) == [(vehicle_id, hour)]
            _, marked_until = await conn.fetchrow(SWEEP_SQL)
            assert marked_until >= hour + timedelta(hours=1)
            # Once swept, a position for that hour is late data: its trigger marks the hour.
            await conn.execute("DELETE FROM telemetry_rollups_stale WHERE org_id = $1", org_id)
            late = (device_id, org_id, vehicle_id, times[-1:], [10.0], [106.0], [0.0], [True])
            await conn.execute(INSERT_SQL, *late)
            assert await _marks(conn, org_id) == [(vehicle_id, hour)]
        finally:
            await conn.execute("DELETE FROM telemetry WHERE org_id = $1", org_id)
            await conn.execute("DELETE FROM telemetry_rollups_stale WHERE org_id = $1", org_id)
