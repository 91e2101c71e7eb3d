"""Point-in-time recovery with pgBackRest, as infrastructure/pgbackrest configures it: a
full backup, positions written, a time T noted, more positions, then a restore to T on a fresh
data directory finds exactly the rows committed up to T."""

import time

from fleet_devstack.stack import REPO_ROOT


def test_restore_to_a_chosen_time_finds_exactly_the_rows_up_to_it(archiving):
    archiving_conf = (REPO_ROOT / "infrastructure/pgbackrest/postgresql-archiving.conf").read_text()
    assert "archive_timeout = 60s" in archiving_conf
    archived = archiving()
    server = archived.server
    server.psql(
        "CREATE TABLE positions (id serial PRIMARY KEY,"
        " recorded_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    server.psql("INSERT INTO positions SELECT FROM generate_series(1, 50)")
    time.sleep(1.0)
    target = server.psql("SELECT clock_timestamp()").strip()
    time.sleep(1.0)
    server.psql("INSERT INTO positions SELECT FROM generate_series(1, 30)")
    assert server.psql("SELECT count(*) FROM positions").strip() == "80"
    # Everything written so far reaches the archive (archive_timeout would do it within a
    # minute; the test does not wait for it).
    server.psql("SELECT pg_switch_wal()")
    archived.pgbackrest("check")
    server.stop()

    started = time.monotonic()
    copy = archived.restore("--type=time", f"--target={target}", "--target-action=promote")
    recovery_s = time.monotonic() - started
    assert copy.psql("SELECT count(*) FROM positions").strip() == "50"
    newest = copy.psql(f"SELECT max(recorded_at) <= '{target}' FROM positions")  # noqa: S608
    assert newest.strip() == "t"
    print(f"\ndrill: point-in-time restore to T and recovery took {recovery_s:.1f} s")
