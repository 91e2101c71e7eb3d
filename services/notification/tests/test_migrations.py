"""The notification migrations go down to nothing and back up."""

import subprocess
import sys

from fleet_devstack.stack import REPO_ROOT


def alembic(url: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT / "services" / "notification",
        env={"NOTIFICATION_DATABASE_URL": url, "PATH": ""},
        check=True,
        capture_output=True,
    )


def test_downgrade_and_upgrade(migrated_database, stack):
    url = migrated_database("notification")
    alembic(url, "downgrade", "base")
    database = url.rsplit("/", 1)[1]
    tables = stack.postgres.psql(
        "SELECT count(*) FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'alembic_version'",
        database=database,
    )
    assert tables.strip() == "0"
    alembic(url, "upgrade", "head")
