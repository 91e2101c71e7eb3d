"""The recovery point of a crash, measured: positions written continuously, PostgreSQL killed
hard (SIGKILL, with its archiver and pgBackRest's pushes: the server is lost, its disk too)
once the archive has run, the repository restored onto a fresh data directory to the end of
the archive, and the rows lost counted against archive_timeout, which bounds them.

At the shipped archive_timeout (postgresql-archiving.conf: 60 s) it takes some three minutes:
a drill, run by `make drill` and not by `make test` (marker `drill`)."""

import asyncio
import time

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError

# A segment switched at the timeout still has to reach the repository (archive-push through
# the spool): the bound on the window lost is archive_timeout plus this.
ARCHIVE_PUSH_SLACK_S = 3.0
RPO_OBJECTIVE_S = 15 * 60
# Segments archived while positions are written before the crash.
SEGMENTS = 2


async def write_positions(url: str, acknowledged: list[tuple[int, float]]) -> None:
    """One row at a time, as fast as a commit returns; (id, time) of each acknowledged one."""
    connection = await asyncpg.connect(url)
    try:
        while True:
            row_id = await connection.fetchval("INSERT INTO positions DEFAULT VALUES RETURNING id")
            acknowledged.append((row_id, time.time()))
            await asyncio.sleep(0.01)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError):
        return  # the server is gone
    finally:
        connection.terminate()


async def archived_segments(url: str) -> tuple[int, float | None]:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT archived_count, extract(epoch FROM last_archived_time) AS at"
            " FROM pg_stat_archiver"
        )
        return row["archived_count"], row["at"] and float(row["at"])
    finally:
        await connection.close()


@pytest.mark.drill
async def test_a_crash_loses_no_more_than_the_archive_timeout(archiving):
    archived = archiving()
    server, timeout_s = archived.server, archived.archive_timeout_s
    server.psql(
        "CREATE TABLE positions (id bigserial PRIMARY KEY,"
        " recorded_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    url = server.url("postgres", driver="postgresql")
    acknowledged: list[tuple[int, float]] = []
    writer = asyncio.create_task(write_positions(url, acknowledged))
    # The archive has run (SEGMENTS segments pushed while positions are written); the crash
    # comes late in the next interval, where the most is at stake.
    before, _ = await archived_segments(url)
    deadline = time.monotonic() + 30 + SEGMENTS * timeout_s * 3
    while True:
        count, last_archived_at = await archived_segments(url)
        if count >= before + SEGMENTS:
            break
        assert time.monotonic() < deadline, "the archive never ran"
        await asyncio.sleep(0.2)
    await asyncio.sleep(max(0.0, last_archived_at + 0.9 * timeout_s - time.time()))
    archived.crash()
    await asyncio.wait_for(writer, 30)
    assert acknowledged, "no position was written"

    started = time.monotonic()
    copy = archived.restore()
    restore_s = time.monotonic() - started
    survived = int(copy.psql("SELECT coalesce(max(id), 0) FROM positions").strip())
    times = dict(acknowledged)
    lost = [row_id for row_id, _ in acknowledged if row_id > survived]
    # Every row was written after the full backup: what survives came through the archive.
    assert survived in times, "nothing written after the backup survived the crash"
    window_s = acknowledged[-1][1] - times[survived]
    print(
        f"\ndrill: crash RPO with archive_timeout {timeout_s} s: {len(lost)} of"
        f" {len(acknowledged)} acknowledged positions lost, the newest survivor committed"
        f" {window_s:.1f} s before the last acknowledged one (bound"
        f" {timeout_s + ARCHIVE_PUSH_SLACK_S:.0f} s, objective"
        f" {RPO_OBJECTIVE_S // 60} min); restore to the end of the archive and recovery"
        f" {restore_s:.1f} s"
    )
    assert window_s <= timeout_s + ARCHIVE_PUSH_SLACK_S
    assert timeout_s + ARCHIVE_PUSH_SLACK_S < RPO_OBJECTIVE_S
