"""Daily partitions of `telemetry`: created ahead of time, dropped whole after retention."""

import re
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from fleet_common.logging import get_logger
from fleet_location.ingest import metrics

log = get_logger(__name__)

_NAME = re.compile(r"^telemetry_p(\d{8})$")
_LOCK_KEY = 0x7E1E_0001  # one process at a time changes the partition set


def partition_name(day: date) -> str:
    return f"telemetry_p{day:%Y%m%d}"


async def existing_partitions(conn: asyncpg.Connection) -> set[date]:
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'telemetry'
        """
    )
    days = set()
    for row in rows:
        match = _NAME.match(row["relname"])
        if match:
            days.add(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date())
    return days


async def ensure_partitions(conn: asyncpg.Connection, first: date, last: date) -> int:
    """Create the daily partitions covering [first, last]; returns how many were created."""
    have = await existing_partitions(conn)
    wanted = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    missing = [day for day in wanted if day not in have]
    if not missing:
        return 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        have = await existing_partitions(conn)
        for day in missing:
            if day in have:
                continue
            upper = day + timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE {partition_name(day)} PARTITION OF telemetry "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{upper.isoformat()}')"
            )
    log.info("telemetry partitions created", count=len(missing), first=str(missing[0]))
    return len(missing)


async def drop_expired(conn: asyncpg.Connection, retention_days: int, today: date) -> int:
    """Drop every partition whose whole day is older than the retention period."""
    cutoff = today - timedelta(days=retention_days)
    expired = sorted(day for day in await existing_partitions(conn) if day < cutoff)
    for day in expired:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
    if expired:
        log.info("telemetry partitions dropped", count=len(expired), before=str(cutoff))
    return len(expired)


async def maintain(
    conn: asyncpg.Connection, *, ahead_days: int, max_age_days: int, retention_days: int
) -> None:
    """Everything accepted (max_age back, a few days ahead) has a partition; nothing older."""
    today = datetime.now(UTC).date()
    await ensure_partitions(
        conn, today - timedelta(days=max_age_days), today + timedelta(days=ahead_days)
    )
    await drop_expired(conn, retention_days, today)
    newest = max(await existing_partitions(conn), default=None)
    if newest is not None:
        covered_until = datetime.combine(newest + timedelta(days=1), time.min, tzinfo=UTC)
        metrics.PARTITIONS_COVER_UNTIL.set(covered_until.timestamp())
