"""`make bench-reports`: the summary report from rollups at fleet scale, next to the raw path.

Starts a throwaway stack and the auth, vehicle, location and gateway services (as
`make bench-ingest` does), creates `--vehicles` vehicles through the API, and fills
`telemetry` with one fix every 30 s per vehicle for the last `--days` days (generate_series:
20 minutes driving, 10 parked, over and over). Then, in one run:

1. the rollup job's backfill: every hour and day rolled up, in rows/s;
2. through the gateway: the whole range's summary and one closed day's (median of 3), each
   next to the raw computation (every row through `analyse`, in this process), which is run
   only while it finishes within `--raw-bound-s`;
3. one vehicle's trips over the last 30 days (`--days` if shorter) through the gateway, from
   rollups, next to the raw computation (its rows through `analyse`, in this process);
4. one vehicle's history over a 366-day range with `max_points` through the gateway (from the
   hourly rollups), next to the raw downsampling (every row read and simplified, as ranges up
   to 31 days are answered), and its history of the 30 days as CSV (raw rows: it returns
   every row, the figure is there to be honest about it);
5. the rollups' cost on ingest: the service's own batch writer, 500 positions a batch, with
   the stale-marking trigger and without it (disabled), and late positions (which it marks),
   in rotating rounds; and the rollup job's hourly sweep, which marks live positions' hours.

    make bench-reports   # or: uv run python services/location/bench/reports.py --help
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import PASSWORD, goal, start_services, stop_services

from fleet_devstack.servers import free_port
from fleet_devstack.stack import Stack
from fleet_location.ingest.writer import TelemetryWriter
from fleet_location.positions.model import Position
from fleet_location.positions.service import stream_history
from fleet_location.trips.detection import Fix, analyse
from fleet_location.trips.rollup import Rules
from fleet_location.trips.rollups import MARK_SWEPT_SQL, SWEEP_SQL, redo_stale

RULES = Rules(stop_speed_kph=3.0, min_stop_duration_s=180.0)
FILL_SQL = """
INSERT INTO telemetry (device_id, recorded_at, org_id, vehicle_id, geog, speed_kph, ignition)
SELECT v.device_id, t, $1, v.vehicle_id,
       ST_SetSRID(ST_MakePoint(106.0 + v.n * 0.01 + (k % 60) * 0.0015, 10.0), 4326)::geography,
       CASE WHEN k % 60 < 40 THEN 40.0 ELSE 0.0 END,
       k % 60 < 40
FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS v(vehicle_id, device_id, n),
     generate_series($4::timestamptz, $5::timestamptz, interval '30 seconds')
        WITH ORDINALITY AS g(t, k)
"""
RAW_SQL = """
SELECT vehicle_id, recorded_at, ST_Y(geog::geometry), ST_X(geog::geometry), speed_kph, ignition
FROM telemetry WHERE org_id = $1 AND vehicle_id IS NOT NULL
    AND recorded_at >= $2 AND recorded_at < $3
ORDER BY vehicle_id, recorded_at
"""


VEHICLE_RAW_SQL = """
SELECT recorded_at, ST_Y(geog::geometry), ST_X(geog::geometry), speed_kph, ignition
FROM telemetry WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
ORDER BY recorded_at
"""
HISTORY_POINTS = 2000


async def fill(pool, org_id, vehicle_ids, start: datetime, end: datetime) -> None:
    """FILL_SQL a day at a time, two days at once (one per core), with the rollups' trigger
    off: a backlog of 43 million rows is marked after, in one statement, as the job's sweep
    marks hours that closed while it was not running."""
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE telemetry DISABLE TRIGGER telemetry_rollups_stale")
    device_ids = [uuid.uuid4() for _ in vehicle_ids]
    both = asyncio.Semaphore(2)

    async def day(first: datetime) -> None:
        last = min(first + timedelta(days=1), end + timedelta(microseconds=1))
        async with both, pool.acquire() as conn:
            # generate_series includes its end: stop short of the next day's first fix.
            await conn.execute(
                FILL_SQL, org_id, vehicle_ids, device_ids, first, last - timedelta(microseconds=1)
            )

    days = [start + timedelta(days=i) for i in range((end - start) // timedelta(days=1) + 1)]
    await asyncio.gather(*(day(first) for first in days if first <= end))
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE telemetry ENABLE TRIGGER telemetry_rollups_stale")


async def raw_trips(conn, org_id, vehicle_id, start, end) -> float:
    """Seconds for one vehicle's trips the raw way: its rows through `analyse`."""
    began = time.perf_counter()
    async with conn.transaction(readonly=True):
        fixes = [
            Fix(*row)
            async for row in conn.cursor(
                VEHICLE_RAW_SQL, org_id, vehicle_id, start, end, prefetch=10_000
            )
        ]
    analyse(fixes, stop_speed_kph=3.0, min_stop_duration_s=180.0)
    return time.perf_counter() - began


async def raw_history(pool, org_id, vehicle_id, start, end) -> float:
    """Seconds for the raw downsampling (every row read, Douglas-Peucker to HISTORY_POINTS)."""
    began = time.perf_counter()
    async for _ in stream_history(pool, org_id, vehicle_id, start, end, HISTORY_POINTS):
        pass
    return time.perf_counter() - began


async def raw_summary(conn, org_id, start, end, bound_s: float) -> float | None:
    """Seconds for the raw computation (every row through `analyse`), or None past bound_s."""
    began = time.perf_counter()
    current, fixes = None, []
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(RAW_SQL, org_id, start, end, prefetch=10_000):
            if row[0] != current:
                analyse(fixes, stop_speed_kph=3.0, min_stop_duration_s=180.0)
                current, fixes = row[0], []
                if time.perf_counter() - began > bound_s:
                    return None
            fixes.append(Fix(row[1], row[2], row[3], row[4], row[5]))
    analyse(fixes, stop_speed_kph=3.0, min_stop_duration_s=180.0)
    return time.perf_counter() - began


def timed_get(http: httpx.Client, path: str, params: dict, rounds: int = 3) -> tuple[float, int]:
    took = []
    size = 0
    for _ in range(rounds):
        began = time.perf_counter()
        response = http.get(path, params=params)
        response.raise_for_status()
        took.append(time.perf_counter() - began)
        size = len(response.content)
    return statistics.median(took), size


WRITER_BATCH = 500
WRITER_LABELS = ("with rollups", "without", "late data")


async def writer_rates(pool, org_id, vehicle_ids, rounds: int) -> dict[str, float]:
    """Positions/s through the batch writer (batches of WRITER_BATCH, as the service writes
    them): live positions with the rollups' trigger and without it (disabled), and positions
    two hours late (an hour swept already: the trigger marks them), in rotating rounds so
    that the machine's load falls on all three alike; the median round of each."""
    writer = TelemetryWriter(pool)
    rates: dict[str, list[float]] = {label: [] for label in WRITER_LABELS}
    device_ids = [uuid.uuid4() for _ in range(WRITER_BATCH)]
    vehicles = [vehicle_ids[i % len(vehicle_ids)] for i in range(WRITER_BATCH)]
    live = datetime.now(UTC)
    late = live - timedelta(hours=2)
    for round_no in range(rounds * len(WRITER_LABELS)):
        label = WRITER_LABELS[round_no % len(WRITER_LABELS)]
        async with pool.acquire() as conn:
            state = "DISABLE" if label == "without" else "ENABLE"
            await conn.execute(f"ALTER TABLE telemetry {state} TRIGGER telemetry_rollups_stale")
        batches = []
        for _ in range(40):
            if label == "late data":
                late += timedelta(milliseconds=10)
                t = late
            else:
                live += timedelta(milliseconds=10)
                t = live
            batches.append(
                [
                    Position(d, v, org_id, t, 10.0, 106.0, speed_kph=40.0, ignition=True)
                    for d, v in zip(device_ids, vehicles, strict=True)
                ]
            )
        began = time.perf_counter()
        for batch in batches:
            await writer.write(batch, [])
        rates[label].append(sum(map(len, batches)) / (time.perf_counter() - began))
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE telemetry ENABLE TRIGGER telemetry_rollups_stale")
    return {label: statistics.median(values) for label, values in rates.items()}


async def sweep_s(conn) -> float:
    """Seconds the job's hourly sweep takes to mark the last closed hour (rolled back)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    tx = conn.transaction()
    await tx.start()
    try:
        began = time.perf_counter()
        await conn.execute(MARK_SWEPT_SQL, hour, hour + timedelta(hours=1))
        return time.perf_counter() - began
    finally:
        await tx.rollback()


def create_vehicles(api: str, count: int) -> tuple[str, dict, list[str]]:
    with httpx.Client(base_url=api, timeout=60) as http:
        registered = http.post(
            "/api/v1/auth/register",
            json={
                "org_name": "Bench reports",
                "email": f"bench-{uuid.uuid4().hex[:6]}@example.com",
                "password": PASSWORD,
                "full_name": "Bench",
            },
        ).raise_for_status()
        body = registered.json()
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        vehicle_ids = [
            http.post(
                "/api/v1/vehicles",
                headers=headers,
                json={"name": f"Van {i}", "plate": f"R-{i:05d}"},
            )
            .raise_for_status()
            .json()["id"]
            for i in range(count)
        ]
    return body["org"]["id"], headers, vehicle_ids


async def main_async(args) -> None:
    state = Path(tempfile.mkdtemp(prefix="fleet-bench-reports-"))
    os.chmod(state, 0o755)  # noqa: S103 - postgres and mosquitto run as their own users
    stack = Stack.create(
        state, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    processes = []
    try:
        stack.start()
        os.environ["LOCATION_ROLLUP_INTERVAL_S"] = "86400"  # the bench runs the job itself
        os.environ["LOCATION_MAX_AGE_DAYS"] = str(max(30, args.days + 1))
        setup, processes = start_services(stack, state)
        gateway = setup["urls"]["gateway"]
        org, headers, vehicles = create_vehicles(gateway, args.vehicles)
        org_id = uuid.UUID(org)
        vehicle_ids = [uuid.UUID(v) for v in vehicles]
        dsn = stack.postgres.url("location_db", driver="postgresql")
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        now = datetime.now(UTC).replace(microsecond=0)
        start = (now - timedelta(days=args.days)).replace(minute=0, second=0)
        # The location service made the partitions at start (LOCATION_MAX_AGE_DAYS back).
        began = time.perf_counter()
        await fill(pool, org_id, vehicle_ids, start, now - timedelta(minutes=5))
        async with pool.acquire() as conn:
            rows = await conn.fetchval("SELECT count(*) FROM telemetry WHERE org_id = $1", org_id)
            fill_s = time.perf_counter() - began
            print(f"filled {rows:,} rows in {fill_s:.0f} s ({rows / fill_s:,.0f} rows/s)")
            # What the job's sweep does for hours that closed while it was not running.
            began = time.perf_counter()
            marks_from, _ = await conn.fetchrow(SWEEP_SQL)
            await conn.execute(MARK_SWEPT_SQL, start, marks_from)
            mark_s = time.perf_counter() - began
            began = time.perf_counter()
            while await redo_stale(conn, RULES, limit=5000):
                pass
            redo_s = time.perf_counter() - began
            rollup_s = mark_s + redo_s
            print(f"marked in {mark_s:.0f} s, rolled up in {redo_s:.0f} s", flush=True)

        day = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0)
        ranges = {
            f"summary, {args.days} days": (start - timedelta(minutes=7), now),
            "summary, one day": (day, day + timedelta(days=1)),
        }
        results = {}
        with httpx.Client(base_url=gateway, headers=headers, timeout=600) as http:
            for title, (a, b) in ranges.items():
                params = {"from": a.isoformat(), "to": b.isoformat()}
                took, _ = timed_get(http, "/api/v1/reports/summary", params)
                async with pool.acquire() as conn:
                    raw = await raw_summary(conn, org_id, a, b, args.raw_bound_s)
                results[title] = (took, raw)
            month_start = now - timedelta(days=min(args.days, 30))
            month = {"from": month_start.isoformat(), "to": now.isoformat()}
            trips_s, _ = timed_get(http, f"/api/v1/vehicles/{vehicles[0]}/trips", month)
            year_start = now - timedelta(days=366)
            year = {"from": year_start.isoformat(), "to": now.isoformat()}
            history_s, _ = timed_get(
                http,
                f"/api/v1/vehicles/{vehicles[0]}/history",
                {**year, "max_points": HISTORY_POINTS},
            )
            csv_s, csv_bytes = timed_get(
                http, f"/api/v1/vehicles/{vehicles[0]}/history", {**month, "format": "csv"}, 1
            )
        async with pool.acquire() as conn:
            trips_raw_s = await raw_trips(conn, org_id, vehicle_ids[0], month_start, now)
        history_raw_s = await raw_history(pool, org_id, vehicle_ids[0], year_start, now)
        async with pool.acquire() as conn:
            swept_s = await sweep_s(conn)
        ingest = await writer_rates(pool, org_id, vehicle_ids, args.writer_rounds)
        await pool.close()

        load = os.getloadavg()
        print(
            f"\n=== reports benchmark: {args.vehicles} vehicles x {args.days} days at 30 s = "
            f"{rows:,} rows ({os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}) ==="
        )
        print(
            f"rollup backfill        {rows / rollup_s:>9,.0f} rows/s ({rollup_s:.1f} s: marking "
            f"{mark_s:.1f} s, rolling up {redo_s:.1f} s); generated at {rows / fill_s:,.0f} rows/s"
        )
        for title, (took, raw) in results.items():
            raw_text = f"{raw:.2f} s" if raw is not None else f"> {args.raw_bound_s:.0f} s"
            ratio = f", {raw / took:,.0f}x faster" if raw else ""
            target = 2.0 if "one day" not in title else 0.2
            print(
                f"{title:<22} {took * 1000:>9,.0f} ms through the gateway (raw: {raw_text}"
                f"{ratio})   goal < {target * 1000:.0f} ms: {goal(took < target)}"
            )
        print(
            f"trips, 1 vehicle, {min(args.days, 30)} d {trips_s * 1000:>7,.0f} ms through the "
            f"gateway (raw: {trips_raw_s * 1000:,.0f} ms, {trips_raw_s / trips_s:,.1f}x faster)"
            f"   goal < 500 ms: {goal(trips_s < 0.5)}"
        )
        print(
            f"history, 366 d range   {history_s * 1000:>9,.0f} ms through the gateway, "
            f"max_points {HISTORY_POINTS} from hourly rollups ({args.days} d of data; raw "
            f"downsampling: {history_raw_s * 1000:,.0f} ms, "
            f"{history_raw_s / history_s:,.1f}x faster)"
        )
        print(f"history CSV, 30 d      {csv_s * 1000:>9,.0f} ms, {csv_bytes:,} bytes (raw rows)")
        ratio = ingest["with rollups"] / ingest["without"]
        print(
            f"writer with rollups    {ingest['with rollups']:>9,.0f} positions/s, without "
            f"{ingest['without']:,.0f}: ratio {ratio:.2f}   goal >= 0.9: {goal(ratio >= 0.9)}"
            f"  ({args.writer_rounds} rounds each, batches of {WRITER_BATCH})"
        )
        print(
            f"writer, late data      {ingest['late data']:>9,.0f} positions/s "
            f"({ingest['late data'] / ingest['without']:.2f} x without; the trigger marks them)"
        )
        print(
            f"hourly sweep           {swept_s * 1000:>9,.0f} ms to mark the last closed hour "
            f"({args.vehicles} vehicles; in the rollup job, off the ingest path)"
        )
    finally:
        stop_services(processes, stack, state)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vehicles", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--raw-bound-s", type=float, default=120.0)
    parser.add_argument("--writer-rounds", type=int, default=9)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
