"""Fixtures of the tracker tests: a location app of their own (own database, short timeouts,
small connection limits), trackers registered through the real vehicle API, and a minimal
TCP device client."""

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from fleet_location.ingest.parsing import Limits

READ_TIMEOUT_S = 15.0


@dataclass
class Tracker:
    device_id: str
    uid: str
    vehicle_id: str
    org_id: str
    org: object


def new_imei() -> str:
    return "86" + "".join(random.choice("0123456789") for _ in range(13))


@pytest.fixture(scope="session")
def make_tracker(vehicle_service) -> Callable[..., Tracker]:
    """A vehicle with a Teltonika or GT06 tracker fitted, through the vehicle API."""

    def factory(org, protocol: str, uid: str | None = None) -> Tracker:
        tag = uuid.uuid4().hex[:8]
        with httpx.Client(base_url=vehicle_service.url, timeout=30.0) as http:
            vehicle = http.post(
                "/api/v1/vehicles",
                headers=org.headers("dispatcher"),
                json={"name": f"Truck {tag}", "plate": f"TR-{tag[:6].upper()}"},
            )
            assert vehicle.status_code == 201, vehicle.text
            created = http.post(
                "/api/v1/devices",
                headers=org.headers("dispatcher"),
                json={
                    "uid": uid or new_imei(),
                    "name": f"{protocol} {tag}",
                    "protocol": protocol,
                    "vehicle_id": vehicle.json()["id"],
                },
            )
            assert created.status_code == 201, created.text
            body = created.json()
        assert body["credentials"] is None
        return Tracker(body["id"], body["uid"], vehicle.json()["id"], org.org_id, org)

    return factory


@pytest.fixture(scope="session")
def delete_tracker(vehicle_service):
    def delete(tracker: Tracker) -> None:
        with httpx.Client(base_url=vehicle_service.url, timeout=30.0) as http:
            response = http.delete(
                f"/api/v1/devices/{tracker.device_id}", headers=tracker.org.headers()
            )
            assert response.status_code == 204, response.text

    return delete


@pytest.fixture(scope="session")
def tracker_database(migrated_database) -> str:
    return migrated_database("location")


@pytest.fixture(scope="session")
async def tracker_location(tracker_database, location_env_for, start_location):
    env = location_env_for(
        tracker_database,
        LOCATION_TRACKER_HANDSHAKE_TIMEOUT_S="1",
        LOCATION_TRACKER_FRAME_TIMEOUT_S="1",
        LOCATION_TRACKER_MAX_CONNECTIONS="12",
        LOCATION_TRACKER_MAX_CONNECTIONS_PER_SOURCE="8",
        LOCATION_TRACKER_MAX_FRAME_BYTES="16384",
    )
    async with start_location(env) as (app, client):
        # The frames are from 2015-2021: accept them (what LOCATION_MAX_AGE_DAYS
        # does, without making the app create a partition for every day since).
        limits = app.state.ingest.limits
        app.state.ingest.limits = Limits(
            max_future=limits.max_future,
            max_age=timedelta(days=20 * 365),
            max_positions_per_message=limits.max_positions_per_message,
        )
        yield app, client


@pytest.fixture(scope="session")
def tracker_app(tracker_location):
    return tracker_location[0]


@pytest.fixture(scope="session")
def tracker_client(tracker_location):
    return tracker_location[1]


@pytest.fixture(scope="session")
async def tracker_db(tracker_database, db_for):
    return await db_for(tracker_database)


class DeviceClient:
    """A tracker's side of a TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes | str) -> None:
        self.writer.write(bytes.fromhex(data) if isinstance(data, str) else data)
        await self.writer.drain()

    async def read(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), READ_TIMEOUT_S)

    async def nothing_within(self, seconds: float) -> bool:
        """True if the server sent nothing (and did not close) for `seconds`."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        assert data is not None
        return False

    async def closed_by_server(self) -> bool:
        """True once the server closes the connection (anything it still sends is dropped)."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                while await self.reader.read(4096):
                    pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def connect():
    """`await connect(port, local="127.0.0.1")`: a DeviceClient, closed after the test."""
    clients: list[DeviceClient] = []

    async def factory(port: int, local: str = "127.0.0.1") -> DeviceClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
        client = DeviceClient(reader, writer)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("telemetry_rejected_total", {"reason": reason}) or 0.0
