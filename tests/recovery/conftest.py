"""A PostgreSQL server archiving WAL with pgBackRest exactly as infrastructure/pgbackrest
configures it (the shipped pgbackrest.conf and postgresql-archiving.conf, with paths of the
test's own), and a restore from its repository onto a fresh data directory: shared by
test_pitr.py (restore to a time) and test_crash_rpo.py (restore after a crash)."""

import configparser
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet_devstack.servers import Postgres, _as_user, _chown, free_port, postgres_bindir
from fleet_devstack.stack import REPO_ROOT

PGBACKREST = REPO_ROOT / "infrastructure" / "pgbackrest"
BACKUP_SCRIPT = REPO_ROOT / "infrastructure" / "scripts" / "pgbackrest-backup.sh"


def as_postgres(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*_as_user("postgres"), *command], capture_output=True, text=True, check=False
    )
    if check:
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


def backup_figures(textfile_dir: Path, kind: str) -> dict[str, float]:
    """fleet_backup_<kind>.prom (backup.sh, pgbackrest-backup.sh) as node-exporter parses it."""
    text = (textfile_dir / f"fleet_backup_{kind}.prom").read_text()
    figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels == {"kind": kind}, sample
            figures[sample.name] = sample.value
    return figures


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def processes_of(postmaster: int, config: str) -> list[int]:
    """The server and everything under it, and pgBackRest's detached archive-push workers of
    this test's configuration: all of what a lost server takes with it."""
    parents: dict[int, int] = {}
    ours = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if f"--config={config}" in cmdline:
            ours.append(int(entry.name))
    found = {postmaster, *ours}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


@dataclass
class Archiving:
    base: Path
    server: Postgres
    backrest: list[str]  # pgbackrest with the test's configuration and the stanza
    archive_timeout_s: int  # in force on the server
    textfile_dir: Path  # where pgbackrest-backup.sh writes its figures for node-exporter
    crashed: bool = False

    def pgbackrest(self, *args: str) -> subprocess.CompletedProcess:
        return as_postgres(*self.backrest, *args)

    def backup(self, stanza: str = "fleet", check: bool = True) -> subprocess.CompletedProcess:
        """The daily backup as the crontab runs it: infrastructure/scripts/pgbackrest-backup.sh."""
        return as_postgres(
            "env", f"FLEET_BACKUP_TEXTFILE_DIR={self.textfile_dir}",
            str(BACKUP_SCRIPT), self.backrest[1], stanza, check=check,
        )  # fmt: skip

    def crash(self) -> None:
        """SIGKILL the server, everything under it and pgBackRest's workers; its data
        directory is as a crash leaves it (postmaster.pid included)."""
        postmaster = int((self.server.data_dir / "postmaster.pid").read_text().split()[0])
        pids = processes_of(postmaster, self.backrest[1].removeprefix("--config="))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.crashed = True
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and not zombie(pid) for pid in pids):
            assert time.monotonic() < deadline, "the killed server's processes linger"
            time.sleep(0.1)

    def restore(self, *options: str) -> Postgres:
        """Restore the repository onto a fresh data directory (`options`: pgBackRest's
        --type/--target; none: to the end of the archive) and start it out of recovery."""
        restored = self.base / "restored"
        restored.mkdir()
        _chown(restored, "postgres")
        os.chmod(restored, 0o700)
        as_postgres(*self.backrest, f"--pg1-path={restored}", *options, "restore")
        copy = Postgres(restored, free_port(), self.server.password, durable=True)
        as_postgres(
            str(postgres_bindir() / "pg_ctl"), "-D", str(restored),
            "-l", str(self.base / "restored.log"),
            "-o", f"-p {copy.port} -c archive_mode=off", "-w", "-t", "120", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while copy.psql("SELECT pg_is_in_recovery()").strip() != "f":
            assert time.monotonic() < deadline, "the restored server never left recovery"
            time.sleep(0.2)
        return copy


@pytest.fixture
def archiving() -> Iterator[Callable[..., Archiving]]:
    """Start an archiving server with a full backup taken."""
    if shutil.which("pgbackrest") is None:
        pytest.fail("pgbackrest is missing: apt-get install pgbackrest (make bootstrap does)")
    base = Path(tempfile.mkdtemp(prefix="fleet-pitr-"))
    os.chmod(base, 0o755)  # noqa: S103 - postgres must reach the folders inside
    started: list[Archiving] = []

    def start() -> Archiving:
        data, socket_dir, repo = base / "pg", base / "socket", base / "repo"
        textfile_dir = base / "textfile"
        for name in ("socket", "repo", "textfile", "log", "spool", "lock"):
            (base / name).mkdir()
        server = Postgres(data, free_port(), "pitr-test-password", durable=True)
        server.init()
        config = configparser.ConfigParser()
        config.read(PGBACKREST / "pgbackrest.conf")
        config["global"].update(
            {"repo1-path": str(repo), "spool-path": str(base / "spool"),
             "log-path": str(base / "log"), "lock-path": str(base / "lock")}
        )  # fmt: skip
        config["fleet"].update(
            {"pg1-path": str(data), "pg1-port": str(server.port),
             "pg1-socket-path": str(socket_dir), "pg1-user": server.user}
        )  # fmt: skip
        conf = base / "pgbackrest.conf"
        with conf.open("w") as out:
            config.write(out)
        archiving = (PGBACKREST / "postgresql-archiving.conf").read_text()
        archiving = archiving.replace("pgbackrest --stanza", f"pgbackrest --config={conf} --stanza")
        timeout = re.search(r"^archive_timeout = (\d+)s$", archiving, re.MULTILINE)
        assert timeout, "postgresql-archiving.conf sets archive_timeout in seconds"
        with (data / "postgresql.conf").open("a") as out:
            out.write(archiving + f"\nunix_socket_directories = '{socket_dir}'\n")
        # pgBackRest talks to the server over its socket, in a directory only postgres enters.
        with (data / "pg_hba.conf").open("r+") as hba:
            rules = hba.read()
            hba.seek(0)
            hba.write("local all all trust\n" + rules)
        os.chmod(socket_dir, 0o700)
        _chown(base, "postgres")
        server.start()
        backrest = ["pgbackrest", f"--config={conf}", "--stanza=fleet"]
        as_postgres(*backrest, "stanza-create")
        archived = Archiving(base, server, backrest, int(timeout.group(1)), textfile_dir)
        archived.backup()
        started.append(archived)
        return archived

    yield start
    for archived in started:
        if not archived.crashed:
            archived.server.stop()
        restored = base / "restored"
        if (restored / "postmaster.pid").exists():
            as_postgres(
                str(postgres_bindir() / "pg_ctl"), "-D", str(restored), "-m", "fast", "stop"
            )
    shutil.rmtree(base, ignore_errors=True)
