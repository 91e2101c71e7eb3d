"""Reads of positions: latest (Redis), nearby (Redis geo), history (PostgreSQL, streamed)."""

import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

import asyncpg
import numpy as np
import orjson
import shapely
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.errors import ServiceUnavailableError
from fleet_common.redis import geo_key, latest_key
from fleet_location.ingest.devices import DeviceDirectory
from fleet_location.trips.rollup import Rules
from fleet_location.trips.rollups import hour_ends

HISTORY_SQL = """
SELECT recorded_at, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon,
    speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct, ignition, odometer_km
FROM telemetry
WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
ORDER BY recorded_at
"""

# Downsampling reads the route once, as two byte strings (each point's WKB and each
# timestamp's binary form, in time order: cheap to produce and to decode with numpy),
# simplifies it in process (Douglas-Peucker, GEOS through shapely), then fetches the kept
# rows by their exact timestamps. The earlier single SQL statement built a PostGIS line of
# M-points and searched ST_Simplify's tolerance on it (about 300 ms for a vehicle-day).
TRACK_SQL = """
SELECT string_agg(ST_AsBinary(geog, 'NDR'), ''::bytea),
    string_agg(timestamptz_send(recorded_at), ''::bytea)
FROM (
    SELECT geog, recorded_at
    FROM telemetry
    WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
    ORDER BY recorded_at
) AS track
"""
# A 2D point in little-endian WKB: byte order, geometry type, x, y.
_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])
# PostgreSQL's binary timestamptz: microseconds since 2000-01-01 UTC, big-endian.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

KEPT_SQL = """
SELECT DISTINCT ON (recorded_at) recorded_at, ST_Y(geog::geometry) AS lat,
    ST_X(geog::geometry) AS lon, speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct,
    ignition, odometer_km
FROM telemetry
WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
    AND recorded_at = ANY($5::timestamptz[])
ORDER BY recorded_at
"""


def simplify_to_count(lons: Sequence[float], lats: Sequence[float], target: int) -> list[int]:
    """Indices of at most `target` points keeping the route's shape (Douglas-Peucker).

    The tolerance is searched (bisection in log space) until the count is within 95% of
    `target`; a first pass at a tiny tolerance drops the bulk of a densely sampled route so
    that the search runs on what is left. The first and last points are always kept.
    """
    count = len(lons)
    if count <= target:
        return list(range(count))
    if target < 2:
        return [0]
    x = np.asarray(lons, dtype=float)
    y = np.asarray(lats, dtype=float)
    line = shapely.linestrings(x, y, np.arange(count, dtype=float))
    span = max(float(x.max() - x.min()), float(y.max() - y.min()), 1e-9)

    def kept(geometry) -> np.ndarray:
        return shapely.get_coordinates(geometry, include_z=True)[:, 2]

    lo, hi = span * 1e-4, span
    base = shapely.simplify(line, lo, preserve_topology=False)
    if shapely.get_num_coordinates(base) <= target:
        base, lo = line, span * 1e-9
    best = np.array([0.0, count - 1.0])
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        candidate = kept(shapely.simplify(base, mid, preserve_topology=False))
        if len(candidate) <= target:
            best, hi = candidate, mid
            if len(candidate) >= target * 0.95:
                break
        else:
            lo = mid
        if hi / lo < 1.0001:
            break
    indices = sorted({int(i) for i in best} | {0, count - 1})
    return indices[:target] if len(indices) > target else indices


async def _downsampled(
    conn: asyncpg.Connection, args: list[Any], max_points: int
) -> list[asyncpg.Record] | None:
    """The kept rows, or None when the range holds no more than `max_points` points."""
    points, times = await conn.fetchrow(TRACK_SQL, *args)
    if points is None or len(times) // 8 <= max_points:
        return None
    track = np.frombuffer(points, dtype=_WKB_POINT)
    micros = np.frombuffer(times, dtype=">i8")
    keep = simplify_to_count(track["x"], track["y"], max_points)
    moments = [_PG_EPOCH + timedelta(microseconds=int(micros[i])) for i in keep]
    return await conn.fetch(KEPT_SQL, *args, moments)


VEHICLE_KNOWN_SQL = """
SELECT EXISTS (SELECT 1 FROM telemetry WHERE org_id = $1 AND vehicle_id = $2)
    OR EXISTS (
        SELECT 1 FROM telemetry_rollups WHERE org_id = $1 AND width_s = 3600 AND vehicle_id = $2
    )
"""
COUNT_SQL = """
SELECT count(*) FROM telemetry
WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
"""


Status = Literal["moving", "stopped", "offline"]


class StatusThresholds(Protocol):
    """The settings a status is judged by (Settings, or the detector's DetectionConfig)."""

    offline_after_s: float
    moving_speed_kph: float


def vehicle_status(document: dict[str, Any], now: datetime, thresholds: StatusThresholds) -> Status:
    """moving / stopped / offline, by the configured thresholds: the API's status, and what
    the offline sweep counts in fleet_vehicles."""
    try:
        recorded_at = datetime.fromisoformat(document["recorded_at"])
    except (KeyError, TypeError, ValueError):
        return "offline"
    if (now - recorded_at).total_seconds() > thresholds.offline_after_s:
        return "offline"
    speed = document.get("speed_kph")
    moving = speed is not None and speed >= thresholds.moving_speed_kph
    return "moving" if moving and document.get("ignition") is not False else "stopped"


async def latest_positions(redis: Redis, org_id: UUID) -> list[dict[str, Any]]:
    try:
        raw = await redis.hgetall(latest_key(org_id))
    except RedisError as exc:
        raise ServiceUnavailableError("latest positions are unavailable (Redis)") from exc
    return [orjson.loads(value) for value in raw.values()]


async def nearby_positions(
    redis: Redis, org_id: UUID, *, lat: float, lon: float, radius_m: float, limit: int
) -> list[tuple[dict[str, Any], float]]:
    try:
        found = await redis.geosearch(
            geo_key(org_id),
            longitude=lon,
            latitude=lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            count=limit,
            withdist=True,
        )
        if not found:
            return []
        members = [member for member, _ in found]
        documents = await redis.hmget(latest_key(org_id), members)
    except RedisError as exc:
        raise ServiceUnavailableError("nearby positions are unavailable (Redis)") from exc
    return [
        (orjson.loads(doc), float(distance))
        for (_, distance), doc in zip(found, documents, strict=True)
        if doc is not None
    ]


async def vehicle_known(
    pool: asyncpg.Pool, directory: DeviceDirectory, org_id: UUID, vehicle_id: UUID
) -> bool:
    """Whether this org has (or had) the vehicle: 404 otherwise, another org's included.
    Its hourly rollups count: they outlive its raw rows (retention)."""
    if directory.knows_vehicle(org_id, vehicle_id):
        return True
    return bool(await pool.fetchval(VEHICLE_KNOWN_SQL, org_id, vehicle_id))


async def count_history(
    pool: asyncpg.Pool, org_id: UUID, vehicle_id: UUID, start: datetime, end: datetime
) -> int:
    return await pool.fetchval(COUNT_SQL, org_id, vehicle_id, start, end)


async def stream_history(
    pool: asyncpg.Pool,
    org_id: UUID,
    vehicle_id: UUID,
    start: datetime,
    end: datetime,
    max_points: int | None,
) -> AsyncIterator[asyncpg.Record]:
    """Time-ordered rows through a server-side cursor (never the whole range in memory)."""
    args: list[Any] = [org_id, vehicle_id, start, end]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        if max_points is not None:
            rows = await _downsampled(conn, args, max_points)
            if rows is not None:
                for row in rows:
                    yield row
                return
        async for row in conn.cursor(HISTORY_SQL, *args, prefetch=2000):
            yield row


async def hourly_history(
    pool: asyncpg.Pool,
    rules: Rules,
    org_id: UUID,
    vehicle_id: UUID,
    start: datetime,
    end: datetime,
    max_points: int,
) -> tuple[list[tuple], int]:
    """A long range's route from the hourly rollups, without reading its raw rows: each
    hour's first and last position, thinned to `max_points` (Douglas-Peucker), as rows in
    `FIELDS` order (the fields a rollup does not keep are None); and the range's position
    count."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        fixes, total = await hour_ends(conn, rules, org_id, vehicle_id, start, end)
    if len(fixes) > max_points:
        keep = simplify_to_count([f.lon for f in fixes], [f.lat for f in fixes], max_points)
        fixes = [fixes[i] for i in keep]
    rows = [
        (f.recorded_at, f.lat, f.lon, f.speed_kph, None, None, None, None, f.ignition, None)
        for f in fixes
    ]
    return rows, total


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
