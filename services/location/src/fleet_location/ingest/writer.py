"""The batch writer: COPY into a temporary staging table, then one INSERT ... SELECT.

The staging table is created, if missing, inside each batch's transaction rather than once
per client connection: behind PgBouncer in transaction pooling mode each transaction may run
on another server connection, and a temporary table lives on the server connection only.

`ON CONFLICT DO NOTHING` on `(device_id, recorded_at)` makes a redelivered message a no-op
in the table; the command's row count says how many positions were new. Redis and the
observers get every stored position, new or not: a message is redelivered when the process
that committed it died before acknowledging it, possibly before its Redis update and event
detection, which are idempotent and so can simply run again.
Rejections of the same batch are written in the same transaction, so an acknowledged
message is always either stored or kept in the dead-letter store.
"""

from dataclasses import dataclass
from datetime import UTC
from uuid import UUID

import asyncpg
import orjson

from fleet_common.logging import get_logger
from fleet_location.ingest import partitions
from fleet_location.ingest.parsing import Reason
from fleet_location.positions.model import Position

log = get_logger(__name__)

MAX_DEAD_LETTER_PAYLOAD = 16 * 1024

STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS telemetry_staging (
    device_id uuid, recorded_at timestamptz, org_id uuid, vehicle_id uuid,
    lat double precision, lon double precision,
    speed_kph double precision, heading_deg double precision, altitude_m double precision,
    accuracy_m double precision, battery_pct double precision, ignition boolean,
    odometer_km double precision, attrs jsonb
) ON COMMIT DELETE ROWS
"""
STAGING_COLUMNS = (
    "device_id",
    "recorded_at",
    "org_id",
    "vehicle_id",
    "lat",
    "lon",
    "speed_kph",
    "heading_deg",
    "altitude_m",
    "accuracy_m",
    "battery_pct",
    "ignition",
    "odometer_km",
    "attrs",
)
INSERT_FROM_STAGING = """
INSERT INTO telemetry (device_id, recorded_at, org_id, vehicle_id, geog, speed_kph,
    heading_deg, altitude_m, accuracy_m, battery_pct, ignition, odometer_km, attrs)
SELECT device_id, recorded_at, org_id, vehicle_id,
    ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, speed_kph, heading_deg,
    altitude_m, accuracy_m, battery_pct, ignition, odometer_km, attrs
FROM telemetry_staging
ON CONFLICT DO NOTHING
"""
REJECTION_COLUMNS = ("source", "reason", "device_uid", "org_id", "detail", "payload")


@dataclass(slots=True)
class RejectionRecord:
    source: str
    reason: str
    device_uid: str | None
    org_id: UUID | None
    detail: str
    payload: bytes

    def row(self) -> tuple:
        uid = self.device_uid.replace("\x00", "")[:256] if self.device_uid else None
        return (
            self.source,
            self.reason,
            uid,
            self.org_id,
            self.detail.replace("\x00", "")[:1000],
            bytes(self.payload[:MAX_DEAD_LETTER_PAYLOAD]),
        )


def _row(p: Position) -> tuple:
    return (
        p.device_id,
        p.recorded_at,
        p.org_id,
        p.vehicle_id,
        p.lat,
        p.lon,
        p.speed_kph,
        p.heading_deg,
        p.altitude_m,
        p.accuracy_m,
        p.battery_pct,
        p.ignition,
        p.odometer_km,
        orjson.dumps(p.attrs).decode() if p.attrs else None,
    )


def _is_poison(exc: BaseException) -> bool:
    """An error caused by the data itself (retrying the same rows cannot succeed)."""
    return isinstance(exc, asyncpg.PostgresError) and str(exc.sqlstate or "")[:2] in ("22", "23")


def _is_missing_partition(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.CheckViolationError) and "no partition" in str(exc)


@dataclass(slots=True)
class WriteResult:
    stored: list[Position]  # in the table now: new, or stored before (a redelivery)
    new: int  # how many of them the table did not hold yet
    failed: list[RejectionRecord]  # positions that could not be stored (now dead-lettered)

    @property
    def duplicates(self) -> int:
        return len(self.stored) - self.new


class TelemetryWriter:
    """Writes one batch per call; connection errors propagate (the caller retries)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(
        self, positions: list[Position], rejections: list[RejectionRecord]
    ) -> WriteResult:
        async with self._pool.acquire() as conn:
            try:
                return await self._write(conn, positions, rejections)
            except asyncpg.PostgresError as exc:
                if _is_missing_partition(exc):
                    await self._cover(conn, positions)
                    return await self._write(conn, positions, rejections)
                if not _is_poison(exc):
                    raise
                log.warning("batch refused by the database; isolating bad rows", error=str(exc))
            return await self._write_isolating(conn, positions, rejections)

    async def _cover(self, conn: asyncpg.Connection, positions: list[Position]) -> None:
        days = [p.recorded_at.astimezone(UTC).date() for p in positions]
        await partitions.ensure_partitions(conn, min(days), max(days))

    async def _write(
        self,
        conn: asyncpg.Connection,
        positions: list[Position],
        rejections: list[RejectionRecord],
    ) -> WriteResult:
        new = 0
        async with conn.transaction():
            if positions:
                await conn.execute(STAGING_DDL)
                await conn.copy_records_to_table(
                    "telemetry_staging",
                    records=[_row(p) for p in positions],
                    columns=STAGING_COLUMNS,
                )
                status = await conn.execute(INSERT_FROM_STAGING)  # "INSERT 0 <new rows>"
                new = int(status.rsplit(" ", 1)[1])
            if rejections:
                await conn.copy_records_to_table(
                    "telemetry_rejections",
                    records=[r.row() for r in rejections],
                    columns=REJECTION_COLUMNS,
                )
        return WriteResult(positions, new, [])

    async def _write_isolating(
        self,
        conn: asyncpg.Connection,
        positions: list[Position],
        rejections: list[RejectionRecord],
    ) -> WriteResult:
        """Halve the batch until the rows the database refuses are alone; dead-letter them."""
        result = WriteResult([], 0, [])
        pending = [positions]
        while pending:
            chunk = pending.pop()
            try:
                part = await self._write(conn, chunk, [])
                result.stored.extend(part.stored)
                result.new += part.new
            except asyncpg.PostgresError as exc:
                if not _is_poison(exc):
                    raise
                if len(chunk) > 1:
                    middle = len(chunk) // 2
                    pending += [chunk[middle:], chunk[:middle]]
                    continue
                result.failed.append(
                    RejectionRecord(
                        "storage",
                        Reason.STORAGE_ERROR,
                        None,
                        chunk[0].org_id,
                        f"database refused the position: {exc.sqlstate}",
                        orjson.dumps(_row(chunk[0]), default=str),
                    )
                )
        await self._write(conn, [], rejections + result.failed)
        return result


async def trim_dead_letters(pool: asyncpg.Pool, max_rows: int) -> int:
    """Keep the newest `max_rows` rejections (ids only grow, so this is one range delete)."""
    async with pool.acquire() as conn:
        status = await conn.execute(
            "DELETE FROM telemetry_rejections WHERE id <= "
            "(SELECT max(id) FROM telemetry_rejections) - $1",
            max_rows,
        )
    return int(status.split()[-1])
