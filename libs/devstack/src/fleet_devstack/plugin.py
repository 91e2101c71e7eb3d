"""pytest plugin: real servers for the whole test session, and helpers to use them.

By default a throwaway PostgreSQL+PostGIS, Redis and Mosquitto are started on free ports in
a temporary folder and removed at the end. A test that needs to stop and start a server
(readiness, outage tests) asks for its own with `make_stack`.
"""

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live


def _new_stack(base: Path) -> Stack:
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    stack.start()
    return stack


@pytest.fixture(scope="session")
def make_stack() -> Iterator:
    """Start a private stack (for tests that stop servers); all are stopped at session end."""
    started: list[tuple[Stack, Path]] = []

    def factory() -> Stack:
        base = Path(tempfile.mkdtemp(prefix="fleet-stack-"))
        os.chmod(base, 0o755)
        stack = _new_stack(base)
        started.append((stack, base))
        return stack

    yield factory
    for stack, base in started:
        stack.stop()
        remove_tree(base)


EXTERNAL_VARIABLES = (
    "TEST_POSTGRES_URL",
    "TEST_REDIS_URL",
    "TEST_MQTT_URL",
    "TEST_MQTT_INGEST_USERNAME",
    "TEST_MQTT_INGEST_PASSWORD",
)


@pytest.fixture(scope="session")
def stack(make_stack) -> Stack:
    """The session's shared PostgreSQL, Redis and Mosquitto: the TEST_* servers when all are
    given (a superuser DSN, a Redis URL, an MQTT URL with the dynsec admin's credentials and
    a client allowed to subscribe to `#`), otherwise throwaway ones of our own."""
    given = [name for name in EXTERNAL_VARIABLES if os.environ.get(name)]
    if given and len(given) < len(EXTERNAL_VARIABLES):
        missing = sorted(set(EXTERNAL_VARIABLES) - set(given))
        pytest.exit(f"set all of the TEST_* server variables or none; missing: {missing}", 2)
    if given:
        return Stack.external(dict(os.environ))
    return make_stack()


@pytest.fixture(scope="session")
def make_database(stack: Stack):
    """Create a fresh, uniquely named database and return its async URL."""

    def factory(prefix: str, *, postgis: bool = False, on: Stack | None = None) -> str:
        target = on or stack
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        target.postgres.create_database(name, postgis=postgis)
        return target.postgres.url(name)

    return factory


@pytest.fixture(scope="session")
def migrated_database(make_database):
    """A fresh database for `service`, migrated to head with the service's own Alembic."""

    def factory(service: str, *, on: Stack | None = None) -> str:
        url = make_database(f"test_{service}", postgis=service == "location", on=on)
        migrate(service, {f"{service.upper()}_DATABASE_URL": url})
        return url

    return factory


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen
    log_path: Path


@pytest.fixture(scope="session")
def run_service():
    """Start a service as a real uvicorn process on a free port; returns its base URL."""
    processes: list[subprocess.Popen] = []

    def factory(service: str, env: dict[str, str], port: int | None = None) -> RunningService:
        port = port or free_port()
        log = open(Path(tempfile.gettempdir()) / f"fleet-{service}-{port}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            service_command(service, port),
            cwd=REPO_ROOT,
            env={**os.environ, "ENVIRONMENT": "test", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        try:
            wait_until_live(port, process=process)
        except Exception:
            process.kill()
            log.close()
            sys.stderr.write(Path(log.name).read_text())
            raise
        return RunningService(f"http://127.0.0.1:{port}", process, Path(log.name))

    yield factory
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
