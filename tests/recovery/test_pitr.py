"""Point-in-time recovery with pgBackRest, as infrastructure/pgbackrest configures it: a
full backup, positions written, a time T noted, more positions, then a restore to T on a fresh
data directory finds exactly the rows committed up to T."""

import configparser
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fleet_devstack.servers import Postgres, _as_user, _chown, free_port, postgres_bindir
from fleet_devstack.stack import REPO_ROOT

PGBACKREST = REPO_ROOT / "infrastructure" / "pgbackrest"


def as_postgres(*command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*_as_user("postgres"), *command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def base() -> Path:
    if shutil.which("pgbackrest") is None:
        pytest.fail("pgbackrest is missing: apt-get install pgbackrest (make bootstrap does)")
    path = Path(tempfile.mkdtemp(prefix="fleet-pitr-"))
    os.chmod(path, 0o755)  # noqa: S103 - postgres must reach the folders inside
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_restore_to_a_chosen_time_finds_exactly_the_rows_up_to_it(base):
    data, socket_dir, repo = base / "pg", base / "socket", base / "repo"
    for directory in (socket_dir, repo, base / "log", base / "spool", base / "lock"):
        directory.mkdir()
    server = Postgres(data, free_port(), "pitr-test-password", durable=True)
    server.init()

    # The shipped pgBackRest configuration, with this test's paths.
    config = configparser.ConfigParser()
    config.read(PGBACKREST / "pgbackrest.conf")
    config["global"].update(
        {"repo1-path": str(repo), "spool-path": str(base / "spool"), "log-path": str(base / "log"),
         "lock-path": str(base / "lock")}
    )  # fmt: skip
    config["fleet"].update(
        {"pg1-path": str(data), "pg1-port": str(server.port),
         "pg1-socket-path": str(socket_dir), "pg1-user": server.user}
    )  # fmt: skip
    conf = base / "pgbackrest.conf"
    with conf.open("w") as out:
        config.write(out)
    archiving = (PGBACKREST / "postgresql-archiving.conf").read_text()
    assert "archive_timeout = 60s" in archiving
    archiving = archiving.replace("pgbackrest --stanza", f"pgbackrest --config={conf} --stanza")
    with (data / "postgresql.conf").open("a") as out:
        out.write(archiving + f"\nunix_socket_directories = '{socket_dir}'\n")
    # pgBackRest talks to the server over its socket, in a directory only postgres can enter.
    with (data / "pg_hba.conf").open("r+") as hba:
        rules = hba.read()
        hba.seek(0)
        hba.write("local all all trust\n" + rules)
    os.chmod(socket_dir, 0o700)
    _chown(base, "postgres")
    server.start()
    try:
        backrest = ["pgbackrest", f"--config={conf}", "--stanza=fleet"]
        as_postgres(*backrest, "stanza-create")
        as_postgres(*backrest, "--type=full", "backup")
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
        # Everything written so far reaches the archive (archive_timeout would do it within
        # a minute; the test does not wait for it).
        server.psql("SELECT pg_switch_wal()")
        as_postgres(*backrest, "check")
    finally:
        server.stop()

    restored = base / "restored"
    restored.mkdir()
    _chown(restored, "postgres")
    os.chmod(restored, 0o700)
    started = time.monotonic()
    as_postgres(
        *backrest, f"--pg1-path={restored}", "--type=time", f"--target={target}",
        "--target-action=promote", "restore",
    )  # fmt: skip
    copy = Postgres(restored, free_port(), server.password, durable=True)
    as_postgres(
        str(postgres_bindir() / "pg_ctl"), "-D", str(restored), "-l", str(base / "restored.log"),
        "-o", f"-p {copy.port} -c archive_mode=off", "-w", "-t", "120", "start",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while copy.psql("SELECT pg_is_in_recovery()").strip() != "f":
            assert time.monotonic() < deadline, "the restored server never left recovery"
            time.sleep(0.2)
        recovery_s = time.monotonic() - started
        assert copy.psql("SELECT count(*) FROM positions").strip() == "50"
        newest = copy.psql(f"SELECT max(recorded_at) <= '{target}' FROM positions")  # noqa: S608
        assert newest.strip() == "t"
        print(f"\ndrill: point-in-time restore to T and recovery took {recovery_s:.1f} s")
    finally:
        as_postgres(str(postgres_bindir() / "pg_ctl"), "-D", str(restored), "-m", "fast", "stop")
