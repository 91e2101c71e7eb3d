"""The location service as the images run it: gunicorn, the images' gunicorn.conf.py, 2 workers.

Each worker must hold a broker session of its own (two connections under one client id take
the session over from each other for as long as both run), and a worker that replaces a dead
one must resume the dead one's session, where its unacknowledged messages wait.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fleet_devstack.servers import free_port
from fleet_devstack.stack import REPO_ROOT
from fleet_location.config import Settings

GUNICORN_CONF = REPO_ROOT / "infrastructure" / "docker" / "gunicorn.conf.py"
TIMEOUT_S = 30.0


def test_the_worker_slot_is_appended_to_the_mqtt_client_id(monkeypatch):
    monkeypatch.delenv("FLEET_WORKER_SLOT", raising=False)
    monkeypatch.delenv("LOCATION_MQTT_CLIENT_ID", raising=False)
    assert Settings().mqtt_client_id == f"fleet-location-{socket.gethostname()}"
    monkeypatch.setenv("FLEET_WORKER_SLOT", "1")
    assert Settings().mqtt_client_id == f"fleet-location-{socket.gethostname()}-1"
    monkeypatch.setenv("LOCATION_MQTT_CLIENT_ID", "fleet-location-a")
    assert Settings().mqtt_client_id == "fleet-location-a-1"
    monkeypatch.delenv("FLEET_WORKER_SLOT")
    assert Settings().mqtt_client_id == "fleet-location-a"


class Gunicorn:
    """A gunicorn arbiter and what it and its workers print."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()

    def workers(self) -> set[int]:
        """The arbiter's live child processes."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return {int(child) for child in children.split()}

    def slots(self) -> dict[int, int]:
        """pid -> slot of every worker the arbiter has started, from gunicorn.conf.py's log."""
        found = re.findall(r"Worker \(pid:(\d+)\) has slot (\d+)", self.log())
        return {int(pid): int(slot) for pid, slot in found}

    def connected(self) -> set[int]:
        """Worker pids whose MQTT consumer reports itself connected (the per-pid gauge)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        samples = re.findall(r'^telemetry_mqtt_connected\{pid="(\d+)"\} (\S+)$', text, re.M)
        return {int(pid) for pid, value in samples if float(value) == 1.0}

    def mqtt_events(self) -> list[dict]:
        """The workers' `MQTT connected` / `MQTT disconnected` log records, in order."""
        records = []
        for line in self.log().splitlines():
            if line.startswith("{") and '"MQTT ' in line:
                record = json.loads(line)
                if record["event"] in ("MQTT connected", "MQTT disconnected"):
                    records.append(record)
        return records


async def wait_until(predicate, what: str, server: Gunicorn, timeout_s: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.process.poll() is None, server.log()
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout_s}s:\n{server.log()}"
        await asyncio.sleep(0.1)


@pytest.fixture
def gunicorn_location(migrated_database, location_env_for, tmp_path):
    database_url = migrated_database("location")
    client_id = f"gunicorn-{uuid.uuid4().hex[:8]}"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        **location_env_for(database_url, LOCATION_MQTT_CLIENT_ID=client_id),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    env.pop("FLEET_WORKER_SLOT", None)
    # The image's command (services/location/Dockerfile), on a free port.
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(GUNICORN_CONF),
        "--bind",
        f"127.0.0.1:{port}",
        "fleet_location.main:create_app()",
    ]
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    server = Gunicorn(process, port, log_path)
    try:
        yield server, client_id, database_url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.slow
async def test_each_worker_keeps_its_own_broker_session_and_a_replacement_resumes_it(
    gunicorn_location, org_a, make_device, connect_device, db_for, wait_for
):
    server, client_id, database_url = gunicorn_location

    def both_connected() -> set[int] | None:
        workers = server.workers()
        return workers if len(workers) == 2 and workers <= server.connected() else None

    workers = await wait_until(both_connected, "both workers connected to the broker", server)
    assert sorted(server.slots()[pid] for pid in workers) == [0, 1]
    # Both stay connected at once: with one client id between them, the broker would hand the
    # session back and forth, disconnecting one whenever the other (re)connects.
    for _ in range(15):
        assert workers <= server.connected(), server.log()
        await asyncio.sleep(0.2)
    events = server.mqtt_events()
    assert sorted(e["client_id"] for e in events if e["event"] == "MQTT connected") == [
        f"{client_id}-0",
        f"{client_id}-1",
    ]
    assert not [e for e in events if e["event"] == "MQTT disconnected"], events

    db = await db_for(database_url)
    device = make_device(org_a)
    publisher = connect_device(device)
    start = datetime.now(UTC) - timedelta(hours=1)

    def publish(first: int, count: int) -> None:
        for i in range(first, first + count):
            ts = (start + timedelta(seconds=i)).isoformat()
            publisher.publish(f"fleet/{device.uid}/telemetry", {"ts": ts, "lat": 1.0, "lon": 2.0})

    async def stored() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device.device_id)
        )

    async def stored_all(count: int) -> bool:
        return await stored() == count

    publish(0, 20)
    await wait_for(lambda: stored_all(20), timeout_s=TIMEOUT_S)

    # SIGKILL the worker of slot 0: gunicorn starts a replacement, which gets slot 0 again and
    # so the same client id, and the broker hands it the dead worker's session.
    (killed,) = [pid for pid in workers if server.slots()[pid] == 0]
    (survivor,) = workers - {killed}
    os.kill(killed, signal.SIGKILL)

    def replaced() -> int | None:
        new = server.workers() - workers
        if len(new) == 1 and new <= server.connected() and survivor in server.connected():
            return next(iter(new))
        return None

    replacement = await wait_until(replaced, "a replacement worker connected", server)
    assert server.workers() == {survivor, replacement}
    assert server.slots()[replacement] == 0
    connects = [e for e in server.mqtt_events() if e["event"] == "MQTT connected"]
    assert [(e["client_id"], e["session_present"]) for e in connects[2:]] == [
        (f"{client_id}-0", True)
    ]
    # The survivor was never disconnected (the killed worker could not log anything).
    assert not [e for e in server.mqtt_events() if e["event"] == "MQTT disconnected"]

    publish(20, 20)
    await wait_for(lambda: stored_all(40), timeout_s=TIMEOUT_S)
