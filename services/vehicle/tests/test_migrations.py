"""The service's migrations go up and down cleanly and match the models."""

import os
import subprocess
import sys
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[1]


def alembic(database_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=SERVICE_DIR,
        env={**os.environ, "VEHICLE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_downgrade_to_base_and_upgrade_again(migrated_database):
    url = migrated_database("vehicle")
    alembic(url, "downgrade", "base")
    alembic(url, "upgrade", "head")
    assert "No new upgrade operations detected" in alembic(url, "check")
