"""The location migrations (geofences) go down to nothing and back up."""

import subprocess
import sys

from fleet_devstack.stack import REPO_ROOT


def alembic(url: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT / "services" / "location",
        env={"LOCATION_DATABASE_URL": url, "PATH": ""},
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_downgrade_and_upgrade(migrated_database, stack):
    url = migrated_database("location")
    alembic(url, "downgrade", "0001")
    database = url.rsplit("/", 1)[1]
    tables = stack.postgres.psql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'geofences'",
        database=database,
    )
    assert tables.strip() == "0"
    alembic(url, "upgrade", "head")
