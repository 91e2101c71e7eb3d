"""The auth migrations upgrade and downgrade cleanly."""

import os
import subprocess
import sys
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[1]


def alembic(*args: str, url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=SERVICE_DIR,
        env={**os.environ, "AUTH_DATABASE_URL": url},
        check=True,
        capture_output=True,
        timeout=120,
    )


def tables(stack, url: str) -> set[str]:
    database = url.rsplit("/", 1)[1]
    out = stack.postgres.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database
    )
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_upgrade_downgrade_upgrade(make_database, stack):
    url = make_database("test_auth_migrations")
    alembic("upgrade", "head", url=url)
    assert {"organizations", "users", "refresh_tokens"} <= tables(stack, url)
    alembic("downgrade", "base", url=url)
    assert tables(stack, url) <= {"alembic_version"}
    alembic("upgrade", "head", url=url)
    assert "users" in tables(stack, url)
