"""Positions per second through the event detector, with 1,000 geofences in the org vs none.

Starts a throwaway PostgreSQL+PostGIS and Redis (fleet_devstack), migrates the location
database, creates 1,000 geofences (half polygons, half circles) scattered over a city, then
feeds the same stream of positions (many devices driving, in ingest-sized batches) through
`EventDetector.positions_committed` for an org with the geofences and for one without, and
once more with the geofences and two maintenance schedules on every vehicle (the cached
device the detector reads them from, as the device directory gives it). The modes run in
rounds, each round in another order and with fresh devices, and the median rate of each is
reported: on a shared machine the mode that runs last was otherwise the slowest.

    uv run python services/location/bench/detection.py [--devices 200] [--batches 100]
"""

import argparse
import asyncio
import math
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from fleet_common.db import create_engine, create_sessionmaker
from fleet_devstack.servers import free_port
from fleet_devstack.stack import Stack, migrate
from fleet_location.config import Settings
from fleet_location.events import create_event_detector
from fleet_location.geofences import service
from fleet_location.geofences.schemas import GeofenceCreate
from fleet_location.ingest.parsing import DeviceInfo, MaintenanceDuePoint
from fleet_location.positions.model import Position

CENTER_LAT, CENTER_LON = 10.78, 106.70
SPREAD_DEG = 0.15


def geofence(i: int, rng: random.Random) -> dict:
    """The API body of benchmark geofence `i` (bench/ingest.py creates the same ones)."""
    lat = CENTER_LAT + rng.uniform(-SPREAD_DEG, SPREAD_DEG)
    lon = CENTER_LON + rng.uniform(-SPREAD_DEG, SPREAD_DEG)
    if i % 2:
        geometry = {"type": "Circle", "center": [lon, lat], "radius_m": rng.uniform(100, 800)}
    else:
        r, n = rng.uniform(0.002, 0.008), rng.randint(5, 12)
        ring = [
            [lon + r * math.cos(2 * math.pi * k / n), lat + r * math.sin(2 * math.pi * k / n)]
            for k in range(n)
        ]
        geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    limit = rng.choice([None, None, 30.0, 50.0])
    return {"name": f"zone {i}", "geometry": geometry, "speed_limit_kph": limit}


def batches(org_id: uuid.UUID, devices: int, count: int, size: int, rng: random.Random):
    """`count` batches of `size` positions from `devices` vehicles driving random walks."""
    state = {
        uuid.uuid4(): [
            CENTER_LAT + rng.uniform(-SPREAD_DEG, SPREAD_DEG),
            CENTER_LON + rng.uniform(-SPREAD_DEG, SPREAD_DEG),
        ]
        for _ in range(devices)
    }
    ids = list(state)
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    tick = 0
    out = []
    for _ in range(count):
        batch = []
        for _ in range(size):
            device = ids[tick % devices]
            tick += 1
            pos = state[device]
            pos[0] += rng.uniform(-0.0015, 0.0015)
            pos[1] += rng.uniform(-0.0015, 0.0015)
            batch.append(
                Position(
                    device_id=device,
                    vehicle_id=device,
                    org_id=org_id,
                    recorded_at=t0 + timedelta(seconds=tick),
                    lat=pos[0],
                    lon=pos[1],
                    speed_kph=rng.uniform(0, 90),
                    battery_pct=rng.uniform(10, 100),
                    ignition=True,
                )
            )
        out.append(batch)
    return out


async def measure(detector, work) -> float:
    started = time.perf_counter()
    for batch in work:
        await detector.positions_committed(batch)
    return sum(len(b) for b in work) / (time.perf_counter() - started)


def start_stack() -> tuple[Stack, Path]:
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-detection-"))
    base.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    stack.postgres.init()
    stack.postgres.start()
    stack.redis.start()
    return stack, base


async def run(args) -> None:
    stack, base = start_stack()
    try:
        stack.postgres.create_database("location_bench", postgis=True)
        url = stack.postgres.url("location_bench")
        migrate("location", {"LOCATION_DATABASE_URL": url})
        settings = Settings(database_url=url, redis_url=stack.redis.url)
        engine = create_engine(url)
        sessionmaker = create_sessionmaker(engine)
        redis = Redis.from_url(stack.redis.url)
        rng = random.Random(7)
        busy, empty = uuid.uuid4(), uuid.uuid4()
        async with sessionmaker() as session:
            for i in range(args.geofences):
                await service.create_geofence(session, busy, GeofenceCreate(**geofence(i, rng)))
        detector = create_event_detector(settings, redis, sessionmaker, lambda _d: 80.0)
        # Due points far ahead: what every position costs is the check, not the event.
        schedules = (
            MaintenanceDuePoint("oil", "Oil change", "odometer_km", 1e6),
            MaintenanceDuePoint("check", "Engine check", "engine_hours", 1e5),
        )

        def maintained(device_id):
            return DeviceInfo(device_id, "bench", device_id, busy, maintenance=schedules)

        with_maintenance = create_event_detector(
            settings, redis, sessionmaker, lambda _d: 80.0, maintained
        )
        modes = [
            ("0 geofences", empty, detector),
            (f"{args.geofences} geofences", busy, detector),
            ("+ maintenance", busy, with_maintenance),
        ]
        rates: dict[str, list[float]] = {label: [] for label, _org, _judge in modes}
        for round_ in range(args.rounds):
            shift = round_ % len(modes)
            for label, org, judge in modes[shift:] + modes[:shift]:
                warm = batches(org, args.devices, 5, args.batch_size, random.Random(1))
                await measure(judge, warm)
                work = batches(org, args.devices, args.batches, args.batch_size, random.Random(2))
                rates[label].append(await measure(judge, work))
        results = {label: statistics.median(found) for label, found in rates.items()}
        events = await redis.xlen("fleet:events")
        for label, rate in results.items():
            each = " ".join(f"{r:,.0f}" for r in rates[label])
            print(f"{label:>16}: {rate:10,.0f} positions/s (median; rounds: {each})")
        medians = list(results.values())
        print(f"ratio (with / without geofences): {medians[1] / medians[0]:.2f}")
        print(
            "ratio (with / without maintenance, both with geofences): "
            f"{medians[2] / medians[1]:.2f}"
        )
        print(f"events published: {events}")
        await redis.aclose()
        await engine.dispose()
    finally:
        stack.redis.stop()
        stack.postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geofences", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode (median)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
