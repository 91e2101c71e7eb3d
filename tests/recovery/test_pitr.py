"""Point-in-time recovery with pgBackRest, as infrastructure/pgbackrest configures it: a
full backup, positions written, a time T noted, more positions, then a restore to T on a fresh
data directory finds exactly the rows committed up to T. The full backup is the daily one,
infrastructure/scripts/pgbackrest-backup.sh, with the figures it leaves for the alerts."""

import time

from fleet_devstack.stack import REPO_ROOT

from .conftest import backup_figures


def test_restore_to_a_chosen_time_finds_exactly_the_rows_up_to_it(archiving):
    archiving_conf = (REPO_ROOT / "infrastructure/pgbackrest/postgresql-archiving.conf").read_text()
    assert "archive_timeout = 60s" in archiving_conf
    before_s = int(time.time())
    archived = archiving()
    after_s = time.time()
    figures = backup_figures(archived.textfile_dir, "pgbackrest")
    assert figures["fleet_backup_last_run_success"] == 1
    success_s = figures["fleet_backup_last_success_timestamp_seconds"]
    assert before_s <= success_s <= after_s
    assert figures["fleet_backup_last_run_timestamp_seconds"] == success_s
    assert 0 <= figures["fleet_backup_last_duration_seconds"] <= after_s - before_s
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

    # A backup that fails (a stanza the repository does not have) says so and keeps the time
    # of the last success, from which BackupTooOld counts.
    failed = archived.backup("no-such-stanza", check=False)
    assert failed.returncode != 0, failed.stderr
    assert "failed for no-such-stanza" in failed.stderr
    figures = backup_figures(archived.textfile_dir, "pgbackrest")
    assert figures["fleet_backup_last_run_success"] == 0
    assert figures["fleet_backup_last_success_timestamp_seconds"] == success_s
    assert figures["fleet_backup_last_run_timestamp_seconds"] >= success_s
    assert "fleet_backup_last_duration_seconds" not in figures
