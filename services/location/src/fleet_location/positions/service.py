"""Reads of positions: latest (Redis), nearby (Redis geo), history (PostgreSQL, streamed)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.errors import ServiceUnavailableError
from fleet_common.redis import geo_key, latest_key
from fleet_location.config import Settings
from fleet_location.ingest.devices import DeviceDirectory

HISTORY_SQL = """
SELECT recorded_at, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon,
    speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct, ignition, odometer_km
FROM telemetry
WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
ORDER BY recorded_at
"""

# Douglas-Peucker (ST_Simplify, searched down to a vertex count by fleet_simplify_to_count)
# on a line whose M value is each point's ordinal, so the kept vertices map back to rows.
DOWNSAMPLED_SQL = """
WITH pts AS MATERIALIZED (
    SELECT recorded_at, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon,
    speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct, ignition, odometer_km,
        row_number() OVER (ORDER BY recorded_at) AS n
    FROM telemetry
    WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
),
line AS (
    SELECT fleet_simplify_to_count(ST_MakeLine(ST_MakePointM(lon, lat, n) ORDER BY n), $5) AS l
    FROM pts
),
kept AS (
    SELECT ST_M(d.geom)::bigint AS n FROM line, ST_DumpPoints(line.l) AS d
)
SELECT recorded_at, lat, lon, speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct,
    ignition, odometer_km
FROM pts JOIN kept USING (n)
ORDER BY n
"""

COUNT_SQL = """
SELECT count(*) FROM telemetry
WHERE org_id = $1 AND vehicle_id = $2 AND recorded_at >= $3 AND recorded_at < $4
"""


def vehicle_status(document: dict[str, Any], now: datetime, settings: Settings) -> str:
    """moving / stopped / offline, by the configured thresholds."""
    try:
        recorded_at = datetime.fromisoformat(document["recorded_at"])
    except (KeyError, TypeError, ValueError):
        return "offline"
    if (now - recorded_at).total_seconds() > settings.offline_after_s:
        return "offline"
    speed = document.get("speed_kph")
    moving = speed is not None and speed >= settings.moving_speed_kph
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
    """Whether this org has (or had) the vehicle: 404 otherwise, another org's included."""
    if directory.knows_vehicle(org_id, vehicle_id):
        return True
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM telemetry WHERE org_id = $1 AND vehicle_id = $2)",
            org_id,
            vehicle_id,
        )
    )


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
    sql = HISTORY_SQL
    if max_points is not None:
        sql = DOWNSAMPLED_SQL
        args.append(max_points)
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        async for row in conn.cursor(sql, *args, prefetch=2000):
            yield row


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
