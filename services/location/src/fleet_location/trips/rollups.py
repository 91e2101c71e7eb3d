"""Rollups in the database: redoing stale buckets, and reading a range from them.

`telemetry_rollups` holds a `Rollup` (rollup.py) per vehicle and closed hour, and per closed
day (the join of its hours). Hours to redo are marked stale (`telemetry_rollups_stale`): once
each hour closes, by the job's `sweep`, for every vehicle with positions in it; and by a
trigger on `telemetry` for positions that arrive later than that (late data, replayed
backlogs). `redo_stale` redoes closed stale hours from raw rows, in the database
(HOUR_PARTS_SQL), and then their days from their hours. Each row holds the rollup's figures
(`state`, all the summary reads) and its settled trips and stops (`segments`, read only for
trip and stop lists). A reader uses a bucket only when it lies wholly inside the range, is
closed, swept and not stale; anything else — the open edges of the range, the current hour,
an hour not swept yet or whose late data is not redone yet — is read raw. Either way the
figures are what `analyse` gives on the raw rows.
"""

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import orjson

from fleet_common.logging import get_logger
from fleet_location.config import Settings
from fleet_location.trips.detection import Fix
from fleet_location.trips.rollup import Rollup, Rules

log = get_logger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Oldest first per vehicle, vehicle by vehicle: a batch then holds whole days of a few
# vehicles, so a backfill redoes each day once or twice, not once per batch.
TAKE_STALE_SQL = """
DELETE FROM telemetry_rollups_stale s
USING (
    SELECT org_id, vehicle_id, hour_start FROM telemetry_rollups_stale
    WHERE hour_start <= $1::timestamptz - interval '1 hour'
        AND hour_start < (SELECT marked_until FROM telemetry_rollups_sweep)
    ORDER BY org_id, vehicle_id, hour_start
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) taken
WHERE (s.org_id, s.vehicle_id, s.hour_start) = (taken.org_id, taken.vehicle_id, taken.hour_start)
RETURNING s.org_id, s.vehicle_id, s.hour_start
"""
# The parts (rollup.py) of (vehicle, hour) pairs of one org, computed in the database: one
# row per run of still or moving segments (`kind` 1 or 0) of each hour, in time order, and a
# last row (`kind` 2) for the hour's last position. Reading every raw row into Python and
# stepping through them one by one (`Rules.of`) rolled up some 5,000 rows/s; here Python sees
# a handful of rows per hour. Each segment's seconds, metres and speed are computed as
# `analyse` computes them (haversine_m, term by term, with pi() / 180 as math.radians has
# it), so they are the same floats; only the order of the sums differs (rounding).
HOUR_PARTS_SQL = """
WITH points AS (
    SELECT s.vehicle_id, date_bin('1 hour', t.recorded_at, timestamptz '2000-01-01 00:00Z')
            AS hour_start,
        t.recorded_at, ST_Y(t.geog::geometry) AS lat, ST_X(t.geog::geometry) AS lon,
        t.speed_kph, t.ignition
    FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS s(vehicle_id, start_at, end_at)
    -- One index range per stretch of hours, whatever the planner guesses of a table just
    -- filled (a merge join on the vehicle alone read every row of the org once per hour).
    CROSS JOIN LATERAL (
        SELECT recorded_at, geog, speed_kph, ignition FROM telemetry
        WHERE org_id = $1 AND vehicle_id = s.vehicle_id
            AND recorded_at >= s.start_at AND recorded_at < s.end_at
    ) t
), paired AS (
    SELECT *, lead(recorded_at) OVER w AS next_at, lead(lat) OVER w AS next_lat,
        lead(lon) OVER w AS next_lon
    FROM points
    WINDOW w AS (PARTITION BY vehicle_id, hour_start ORDER BY recorded_at)
), measured AS (
    SELECT *, extract(epoch FROM next_at - recorded_at)::float8 AS seconds,
        2 * 6371008.8::float8 * asin(least(1.0::float8, sqrt(
            power(sin((next_lat * (pi() / 180) - lat * (pi() / 180)) / 2), 2)
            + cos(lat * (pi() / 180)) * cos(next_lat * (pi() / 180))
                * power(sin((next_lon - lon) * (pi() / 180) / 2), 2)
        ))) AS metres
    FROM paired
), speeds AS (
    SELECT *, CASE
            WHEN next_at IS NULL THEN NULL
            WHEN speed_kph IS NOT NULL THEN speed_kph
            WHEN seconds > 0 THEN metres / seconds * 3.6::float8
            ELSE 0.0::float8
        END AS speed
    FROM measured
), kinds AS (
    SELECT *, CASE
            WHEN next_at IS NULL THEN 2
            WHEN ignition IS FALSE OR speed < $5 OR seconds >= $6 THEN 1
            ELSE 0
        END AS kind
    FROM speeds
), marked AS (
    SELECT *, lead(speed) OVER w AS next_speed, kind <> lag(kind, 1, -1) OVER w AS begins
    FROM kinds
    WINDOW w AS (PARTITION BY vehicle_id, hour_start ORDER BY recorded_at)
), islands AS (
    SELECT *, sum(begins::int) OVER w AS island
    FROM marked
    WINDOW w AS (PARTITION BY vehicle_id, hour_start ORDER BY recorded_at)
)
SELECT vehicle_id, hour_start, min(kind),
    min(recorded_at), max(lat) FILTER (WHERE begins), max(lon) FILTER (WHERE begins),
    max(speed_kph) FILTER (WHERE begins), bool_or(ignition) FILTER (WHERE begins),
    sum(seconds), sum(metres),
    -- a part's top speed: its points' speeds, the one it ends at included
    max(greatest(speed, next_speed)),
    max(speed) FILTER (WHERE begins),
    coalesce(bool_or(ignition IS TRUE), false),
    sum(CASE WHEN ignition IS TRUE AND speed < $5 AND seconds < $6 THEN seconds ELSE 0 END),
    count(*)
FROM islands
GROUP BY vehicle_id, hour_start, island
ORDER BY vehicle_id, hour_start, island
"""
EDGE_FIXES_SQL = """
SELECT vehicle_id, recorded_at, ST_Y(geog::geometry), ST_X(geog::geometry), speed_kph, ignition
FROM telemetry
WHERE org_id = $1 AND vehicle_id IS NOT NULL AND recorded_at >= $2 AND recorded_at < $3
    AND ($4::uuid IS NULL OR vehicle_id = $4)
ORDER BY vehicle_id, recorded_at
"""
UPSERT_SQL = """
INSERT INTO telemetry_rollups (org_id, vehicle_id, width_s, bucket_start, state, segments)
SELECT $1, v, $2, b, s, g
FROM unnest($3::uuid[], $4::timestamptz[], $5::jsonb[], $6::jsonb[]) AS x(v, b, s, g)
ON CONFLICT (org_id, width_s, vehicle_id, bucket_start)
DO UPDATE SET state = excluded.state, segments = excluded.segments, computed_at = now()
"""
DELETE_SQL = """
DELETE FROM telemetry_rollups
WHERE org_id = $1 AND width_s = $2
    AND (vehicle_id, bucket_start) IN (SELECT * FROM unnest($3::uuid[], $4::timestamptz[]))
"""
# A range condition per day, so each day is an index range of the primary key (a condition
# on date_trunc(bucket_start) read every hour rollup of the org, once per batch).
DAY_HOURS_SQL = """
SELECT r.vehicle_id, r.bucket_start, r.state, r.segments
FROM unnest($2::uuid[], $3::timestamptz[]) AS d(vehicle_id, day_start)
JOIN telemetry_rollups r ON r.org_id = $1 AND r.width_s = 3600 AND r.vehicle_id = d.vehicle_id
    AND r.bucket_start >= d.day_start AND r.bucket_start < d.day_start + interval '1 day'
ORDER BY r.vehicle_id, r.bucket_start
"""
ROLLUPS_SQL = """
SELECT vehicle_id, bucket_start, state, CASE WHEN $6 THEN segments END FROM telemetry_rollups
WHERE org_id = $1 AND width_s = $2 AND bucket_start >= $3 AND bucket_start < $4
    AND ($5::uuid IS NULL OR vehicle_id = $5)
"""
STALE_SQL = """
SELECT vehicle_id, hour_start FROM telemetry_rollups_stale
WHERE org_id = $1 AND hour_start >= $2 AND hour_start < $3
    AND ($4::uuid IS NULL OR vehicle_id = $4)
"""
MARK_STALE_SQL = """
INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
SELECT $1, v, h FROM unnest($2::uuid[], $3::timestamptz[]) AS x(v, h)
ORDER BY 2, 3
ON CONFLICT DO NOTHING
"""
PRUNE_SQL = "DELETE FROM telemetry_rollups WHERE bucket_start < $1"
# Shared by writers (the trigger of migration reports_0003), alone by a sweep moving marks_from.
SWEEP_LOCK_KEY = 1_700_317_017
SWEEP_SQL = "SELECT marks_from, marked_until FROM telemetry_rollups_sweep"
MOVE_MARKS_FROM_SQL = "UPDATE telemetry_rollups_sweep SET marks_from = $1 WHERE marks_from < $1"
# Every (vehicle, hour) with positions the trigger did not mark, in one scan of those hours.
MARK_SWEPT_SQL = """
INSERT INTO telemetry_rollups_stale (org_id, vehicle_id, hour_start)
SELECT DISTINCT org_id, vehicle_id, date_trunc('hour', recorded_at, 'UTC')
FROM telemetry
WHERE vehicle_id IS NOT NULL AND recorded_at >= $1 AND recorded_at < $2
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""
MARKED_UNTIL_SQL = "UPDATE telemetry_rollups_sweep SET marked_until = $1"


def rollup_rules(settings: Settings) -> Rules:
    return Rules(
        stop_speed_kph=settings.stop_speed_kph, min_stop_duration_s=settings.min_stop_duration_s
    )


def _floor(moment: datetime, width: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (moment - epoch) // width * width


def _ceil(moment: datetime, width: timedelta) -> datetime:
    floor = _floor(moment, width)
    return floor if floor == moment else floor + width


def _encode(rollup: Rollup) -> tuple[str, str]:
    """The `state` and `segments` columns."""
    return orjson.dumps(rollup.to_json()).decode(), orjson.dumps(rollup.segments_json()).decode()


def _decode(state: str, segments: str | None) -> Rollup:
    return Rollup.from_json(orjson.loads(state), segments and orjson.loads(segments))


async def _group_fixes(rows) -> dict[UUID, list[Fix]]:
    fixes: dict[UUID, list[Fix]] = defaultdict(list)
    async for row in rows:
        fixes[row[0]].append(Fix(row[1], row[2], row[3], row[4], row[5]))
    return fixes


async def redo_stale(conn: asyncpg.Connection, rules: Rules, *, limit: int = 2000) -> int:
    """Redo up to `limit` closed stale hours, then the closed days they lie in; one transaction,
    so that a crash leaves them stale. Returns the number of hours redone."""
    now = datetime.now(UTC)
    async with conn.transaction():
        # HOUR_PARTS_SQL sorts a batch's rows (some 120 an hour at one fix per 30 s) in memory.
        await conn.execute("SET LOCAL work_mem = '64MB'")
        taken = await conn.fetch(TAKE_STALE_SQL, now, limit)
        by_org: dict[UUID, list] = defaultdict(list)
        for org_id, vehicle_id, hour in taken:
            by_org[org_id].append((vehicle_id, hour))
        for org_id, hours in by_org.items():
            await _redo_hours(conn, rules, org_id, hours)
            days = {(v, _floor(h, DAY)) for v, h in hours}
            closed = sorted(d for d in days if d[1] + DAY <= now)
            await _redo_days(conn, rules, org_id, closed)
            # A day still open is redone once it closes: its last hour, marked stale, brings
            # it back then (even if the vehicle sends nothing more that day).
            still_open = [d for d in days if d[1] + DAY > now]
            if still_open:
                await conn.execute(
                    MARK_STALE_SQL,
                    org_id,
                    [v for v, _ in still_open],
                    [d + DAY - HOUR for _, d in still_open],
                )
    return len(taken)


async def hour_rollups(conn, rules: Rules, org_id: UUID, hours) -> dict[tuple, Rollup]:
    """The rollups of (vehicle, hour start) pairs that have positions, from raw rows."""
    stretches: list[list] = []  # consecutive hours of a vehicle, as [vehicle, start, end]
    for vehicle_id, hour in sorted(hours):
        if stretches and stretches[-1][0] == vehicle_id and stretches[-1][2] == hour:
            stretches[-1][2] = hour + HOUR
        else:
            stretches.append([vehicle_id, hour, hour + HOUR])
    rows = conn.cursor(
        HOUR_PARTS_SQL,
        org_id,
        [v for v, _, _ in stretches],
        [start for _, start, _ in stretches],
        [end for _, _, end in stretches],
        rules.stop_speed_kph,
        rules.min_stop_duration_s,
        prefetch=10_000,
    )
    result: dict[tuple, Rollup] = {}
    runs: list[tuple] = []
    idle_s = 0.0
    positions = 0
    async for row in rows:
        kind, start = row[2], Fix(row[3], row[4], row[5], row[6], row[7])
        positions += row[14]
        if kind == 2:  # the hour's last position, after its runs
            result[(row[0], row[1])] = rules.of_runs(start, positions, idle_s, runs)
            runs, idle_s, positions = [], 0.0, 0
            continue
        idle_s += row[13]
        runs.append((kind == 1, start, row[8], row[9], row[10], row[11], row[12]))
    return result


async def _redo_hours(conn, rules: Rules, org_id: UUID, hours: list) -> None:
    await _store(conn, org_id, 3600, hours, await hour_rollups(conn, rules, org_id, hours))


async def _redo_days(conn, rules: Rules, org_id: UUID, days: list) -> None:
    if not days:
        return
    rows = await conn.fetch(DAY_HOURS_SQL, org_id, [v for v, _ in days], [d for _, d in days])
    hours: dict[tuple, list[Rollup]] = defaultdict(list)
    for vehicle_id, hour, state, segments in rows:
        hours[(vehicle_id, _floor(hour, DAY))].append(_decode(state, segments))
    joined = {key: rules.join_all(rollups) for key, rollups in hours.items()}
    await _store(conn, org_id, 86400, days, joined)


async def _store(conn, org_id: UUID, width_s: int, keys: list, rollups: dict) -> None:
    present = [(key, rollup) for key, rollup in rollups.items() if rollup is not None]
    gone = [key for key in keys if key not in rollups]  # its positions were all deleted
    if present:
        encoded = [_encode(r) for _, r in present]
        await conn.execute(
            UPSERT_SQL,
            org_id,
            width_s,
            [k[0] for k, _ in present],
            [k[1] for k, _ in present],
            [state for state, _ in encoded],
            [segments for _, segments in encoded],
        )
    if gone:
        await conn.execute(DELETE_SQL, org_id, width_s, [k[0] for k in gone], [k[1] for k in gone])


async def sweep(conn: asyncpg.Connection, *, until: datetime | None = None) -> None:
    """Mark the hours up to `until` (default: the current hour's start) that live positions
    did not mark (migration reports_0003 explains why, and why this is exact)."""
    cut = until or _floor(datetime.now(UTC), HOUR)
    marks_from, _ = await conn.fetchrow(SWEEP_SQL)
    if marks_from < cut:
        async with conn.transaction():
            # Waits for the writers in flight; the ones after see the new marks_from.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK_KEY)
            await conn.execute(MOVE_MARKS_FROM_SQL, cut)
    async with conn.transaction():
        marks_from, marked_until = await conn.fetchrow(SWEEP_SQL + " FOR UPDATE")
        if marked_until < marks_from:
            await conn.execute(MARK_SWEPT_SQL, marked_until, marks_from)
            await conn.execute(MARKED_UNTIL_SQL, marks_from)


async def prune(conn: asyncpg.Connection, *, keep_days: int) -> None:
    """Rollups outlive raw telemetry (`rollup_retention_days`), but not forever."""
    await conn.execute(PRUNE_SQL, datetime.now(UTC) - timedelta(days=keep_days))


async def range_rollups(
    conn: asyncpg.Connection,
    rules: Rules,
    org_id: UUID,
    start: datetime,
    end: datetime,
    vehicle_id: UUID | None = None,
    *,
    segments: bool = False,
) -> dict[UUID, Rollup]:
    """Each vehicle's rollup of [start, end): closed, clean days and hours from the rollup
    table, everything else from raw rows, joined in time order. With `segments`, the rollups
    carry their trips and stops (`Rules.segments`); without, only the summary's figures."""
    pieces = await range_pieces(
        conn, rules, org_id, start, end, vehicle_id, segments=segments, days=True
    )
    result = {}
    for vehicle, parts in pieces.items():
        joined = rules.join_all([rollup for _, rollup in parts])
        if joined is not None:
            result[vehicle] = joined
    return result


async def range_pieces(
    conn: asyncpg.Connection,
    rules: Rules,
    org_id: UUID,
    start: datetime,
    end: datetime,
    vehicle_id: UUID | None = None,
    *,
    segments: bool = False,
    days: bool = True,
) -> dict[UUID, list[tuple[datetime, Rollup]]]:
    """Each vehicle's rollups covering [start, end), by start, in time order: the range's
    partial first and last hours (and the current one) from raw rows, then closed, clean days
    (unless not `days`) and hours from the table, stale hours from raw rows."""
    now = datetime.now(UTC)
    _, marked_until = await conn.fetchrow(SWEEP_SQL)
    # Whole closed, marked hours inside the range; the rest of it is read raw for every
    # vehicle (an hour not swept yet may have positions and no mark).
    first_hour = _ceil(start, HOUR)
    last_hour = min(_floor(end, HOUR), _floor(now, HOUR), marked_until)
    pieces: dict[UUID, list[tuple[datetime, Rollup]]] = defaultdict(list)
    raw_edges = [(start, min(first_hour, end))]
    if first_hour < last_hour:
        raw_edges.append((last_hour, end))
    else:
        raw_edges = [(start, end)]
        last_hour = first_hour
    for edge_start, edge_end in raw_edges:
        if edge_start < edge_end:
            rows = conn.cursor(EDGE_FIXES_SQL, org_id, edge_start, edge_end, vehicle_id)
            for vehicle, fixes in (await _group_fixes(rows)).items():
                pieces[vehicle].append((edge_start, rules.of(fixes)))
    if first_hour < last_hour:
        await _add_buckets(
            conn, rules, org_id, (first_hour, last_hour), vehicle_id, segments, days, pieces
        )
    return {vehicle: sorted(parts, key=lambda item: item[0]) for vehicle, parts in pieces.items()}


async def _add_buckets(conn, rules, org_id, hours, vehicle_id, segments, days, pieces) -> None:
    """Closed whole hours [first_hour, last_hour): days where whole and clean (if `days`),
    else hours, and stale hours raw."""
    first_hour, last_hour = hours
    first_day, last_day = _ceil(first_hour, DAY), _floor(last_hour, DAY)
    if not days:
        first_day = last_day = first_hour  # no whole days: every hour from the hour rows
    stale = await conn.fetch(STALE_SQL, org_id, first_hour, last_hour, vehicle_id)
    stale_hours = {(v, h) for v, h in stale}
    stale_days = {(v, _floor(h, DAY)) for v, h in stale}
    day_covered: set[tuple] = set()
    if first_day < last_day:
        for vehicle, day, state, segments_json in await conn.fetch(
            ROLLUPS_SQL, org_id, 86400, first_day, last_day, vehicle_id, segments
        ):
            if (vehicle, day) not in stale_days:
                pieces[vehicle].append((day, _decode(state, segments_json)))
                day_covered.add((vehicle, day))
    # Hours outside the whole days (the range's first and last days), and the hours of days
    # that have a stale hour.
    hour_ranges = [(first_hour, min(first_day, last_hour)), (max(last_day, first_hour), last_hour)]
    if first_day >= last_day:
        hour_ranges = [(first_hour, last_hour)]
    for _, day in stale_days:
        if first_day <= day < last_day:
            hour_ranges.append((day, day + DAY))
    seen: set[tuple] = set()
    for range_start, range_end in hour_ranges:
        if range_start >= range_end:
            continue
        for vehicle, hour, state, segments_json in await conn.fetch(
            ROLLUPS_SQL, org_id, 3600, range_start, range_end, vehicle_id, segments
        ):
            key = (vehicle, hour)
            day = _floor(hour, DAY)
            if key in stale_hours or key in seen or (vehicle, day) in day_covered:
                continue
            seen.add(key)
            pieces[vehicle].append((hour, _decode(state, segments_json)))
    if stale_hours:
        for (vehicle, hour), rollup in (
            await hour_rollups(conn, rules, org_id, stale_hours)
        ).items():
            pieces[vehicle].append((hour, rollup))


async def hour_ends(
    conn: asyncpg.Connection,
    rules: Rules,
    org_id: UUID,
    vehicle_id: UUID,
    start: datetime,
    end: datetime,
) -> tuple[list[Fix], int]:
    """A vehicle's first and last position of every hour of [start, end) that has any (of
    the range's partial first and last hours: within the range), in time order, and how many
    positions the range holds. From the hourly rollups; raw rows where `range_pieces` reads
    them."""
    pieces = await range_pieces(conn, rules, org_id, start, end, vehicle_id, days=False)
    fixes: list[Fix] = []
    total = 0
    for _, rollup in pieces.get(vehicle_id, []):
        total += rollup.positions
        fixes.append(rollup.first)
        if rollup.positions > 1:
            fixes.append(rollup.last)
    return fixes, total


async def maintain(pool: asyncpg.Pool, rules: Rules, *, interval_s: float, keep_days: int) -> None:
    """Redo stale buckets every `interval_s` (all of them, in bounded transactions), and prune
    old rollups, for as long as we run. Replicas share the work (SKIP LOCKED)."""
    while True:
        try:
            async with pool.acquire() as conn:
                await sweep(conn)
                redone = 1
                while redone:  # each batch its own transaction: ingest goes on in between
                    redone = await redo_stale(conn, rules)
                await prune(conn, keep_days=keep_days)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("rollup maintenance failed; retrying", error=str(exc))
        await asyncio.sleep(interval_s)
