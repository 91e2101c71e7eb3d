"""Fixtures of the location service's tests.

The real auth and vehicle services run as processes on the session stack; devices are
created through the vehicle API (so they get real broker credentials and the location
service maps them through the real `/internal/devices` lookup). The location app runs
in-process, or as a real process where a test kills it.
"""

import asyncio
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from redis.asyncio import Redis

from fleet_devstack.servers import Mosquitto, free_port, remove_tree
from fleet_devstack.stack import Stack
from fleet_location.config import Settings
from fleet_location.main import create_app

TIMEOUT_S = 15.0


@dataclass
class VehicleService:
    url: str
    database_url: str


@pytest.fixture(scope="session")
def vehicle_service(stack, migrated_database, run_service, auth_service) -> VehicleService:
    database_url = migrated_database("vehicle")
    env = {
        "VEHICLE_DATABASE_URL": database_url,
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": auth_service.jwks_url,
        "INTERNAL_SERVICE_TOKEN": stack.secrets["internal_token"],
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(stack.mosquitto.port),
        "VEHICLE_MQTT_ADMIN_USERNAME": stack.mosquitto.admin_username,
        "VEHICLE_MQTT_ADMIN_PASSWORD": stack.mosquitto.admin_password,
        # Its own group: a vehicle service disables broker clients of its group that it does
        # not know, and other tests run vehicle services on the same broker.
        "VEHICLE_DEVICE_GROUP": f"fleet-devices-location-{uuid.uuid4().hex[:8]}",
        "VEHICLE_COMMAND_SHARE_GROUP": f"location{uuid.uuid4().hex[:8]}",
        # The tracker command tests see a command expire in about a second.
        "VEHICLE_COMMAND_EXPIRY_SWEEP_INTERVAL_S": "0.3",
    }
    running = run_service("vehicle", env)
    return VehicleService(running.url, database_url)


@pytest.fixture(scope="session")
def location_database(migrated_database) -> str:
    return migrated_database("location")


def location_env(stack, auth_service, vehicle_service, database_url: str, **extra) -> dict:
    """The environment of a location service on the session stack."""
    return {
        "ENVIRONMENT": "test",
        "LOCATION_DATABASE_URL": database_url,
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": auth_service.jwks_url,
        "INTERNAL_SERVICE_TOKEN": stack.secrets["internal_token"],
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(stack.mosquitto.port),
        "LOCATION_MQTT_USERNAME": stack.mosquitto.ingest_username,
        "LOCATION_MQTT_PASSWORD": stack.mosquitto.ingest_password,
        "LOCATION_VEHICLE_URL": vehicle_service.url,
        "LOCATION_MQTT_CLIENT_ID": f"location-test-{uuid.uuid4().hex[:8]}",
        # Each test app has its own share group, so apps running side by side (the kill
        # test's process and the in-process app) each see their whole stream.
        "LOCATION_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
        # The tracker listeners on free loopback ports (app.state.trackers.port() says which).
        "LOCATION_TRACKERS_HOST": "127.0.0.1",
        "LOCATION_TELTONIKA_PORT": "0",
        "LOCATION_GT06_PORT": "0",
        **extra,
    }


def settings_from(env: dict) -> Settings:
    values = {
        k.removeprefix("LOCATION_").lower() if k.startswith("LOCATION_") else k: v
        for k, v in env.items()
    }
    return Settings(**values)


@asynccontextmanager
async def running_location(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            consumer = app.state.mqtt
            deadline = time.monotonic() + TIMEOUT_S
            while consumer is not None and not consumer.is_connected():
                assert time.monotonic() < deadline, "the MQTT consumer did not connect"
                await asyncio.sleep(0.02)
            yield app, client


@pytest.fixture(scope="session")
async def location(stack, auth_service, vehicle_service, location_database):
    env = location_env(stack, auth_service, vehicle_service, location_database)
    async with running_location(settings_from(env)) as pair:
        yield pair


@pytest.fixture(scope="session")
def app(location) -> FastAPI:
    return location[0]


@pytest.fixture(scope="session")
def client(location) -> httpx.AsyncClient:
    return location[1]


@pytest.fixture(scope="session")
async def db(location_database) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        location_database.replace("postgresql+asyncpg://", "postgresql://"), min_size=1, max_size=4
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def db_for() -> AsyncIterator:
    """`await db_for(url)`: an asyncpg pool on another database, closed at the end."""
    pools: list[asyncpg.Pool] = []

    async def factory(database_url: str) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            database_url.replace("postgresql+asyncpg://", "postgresql://"), min_size=0, max_size=2
        )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.terminate()


@pytest.fixture(scope="session")
async def redis(stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def org_a(make_org):
    return make_org()


@pytest.fixture(scope="session")
def org_b(make_org):
    return make_org()


@dataclass
class Device:
    device_id: str
    uid: str
    vehicle_id: str | None
    org_id: str
    password: str
    http_key: str


@pytest.fixture(scope="session")
def make_device(vehicle_service) -> Callable[..., Device]:
    """A vehicle and a device fitted to it, created through the vehicle API."""

    def factory(org, *, protocol: str = "mqtt", with_vehicle: bool = True) -> Device:
        tag = uuid.uuid4().hex[:10]
        with httpx.Client(base_url=vehicle_service.url, timeout=30.0) as http:
            vehicle_id = None
            if with_vehicle:
                created = http.post(
                    "/api/v1/vehicles",
                    headers=org.headers("dispatcher"),
                    json={"name": f"Truck {tag}", "plate": f"T-{tag[:6].upper()}"},
                )
                assert created.status_code == 201, created.text
                vehicle_id = created.json()["id"]
            created = http.post(
                "/api/v1/devices",
                headers=org.headers("dispatcher"),
                json={
                    "uid": f"dev-{tag}",
                    "name": f"Tracker {tag}",
                    "protocol": protocol,
                    "vehicle_id": vehicle_id,
                },
            )
            assert created.status_code == 201, created.text
            body = created.json()
        credentials = body["credentials"]
        return Device(
            body["id"],
            body["uid"],
            vehicle_id,
            org.org_id,
            credentials["password"],
            credentials["http_key"],
        )

    return factory


class DevicePublisher:
    """A device on the real broker with its own credentials, publishing QoS 1."""

    def __init__(self, port: int, username: str, password: str, client_id: str | None = None):
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *_args: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(TIMEOUT_S), "device could not connect"

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        info = self.client.publish(topic, data, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def connect_device(stack):
    publishers: list[DevicePublisher] = []

    def factory(
        device: Device | None = None, *, uid: str | None = None, password: str | None = None
    ) -> DevicePublisher:
        if device is not None:
            uid, password = device.uid, device.password
        publisher = DevicePublisher(stack.mosquitto.port, uid, password)
        publishers.append(publisher)
        return publisher

    yield factory
    for publisher in publishers:
        publisher.close()


async def _wait_for(predicate, timeout_s: float = TIMEOUT_S, interval_s: float = 0.05):
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)


@pytest.fixture(scope="session")
def wait_for():
    """`await wait_for(async_predicate, timeout_s=...)`: the predicate's first truthy value."""
    return _wait_for


@pytest.fixture(scope="session")
def stored_count(db):
    async def count(device_id: str) -> int:
        return await db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device_id)
        )

    return count


@pytest.fixture(scope="session")
def location_env_for(stack, auth_service, vehicle_service):
    """The environment of a location service on the session stack, with overrides."""

    def factory(database_url: str, **extra) -> dict:
        return location_env(stack, auth_service, vehicle_service, database_url, **extra)

    return factory


@pytest.fixture(scope="session")
def start_location():
    """`async with start_location(env) as (app, client)`: an in-process location app."""

    def factory(env: dict):
        return running_location(settings_from(env))

    return factory


@pytest.fixture(scope="session")
def make_broker() -> Iterator[Callable[[], Mosquitto]]:
    """`make_broker()`: a Mosquitto of one's own, to stop and start (lighter than make_stack)."""
    started: list[tuple[Mosquitto, Path]] = []

    def factory() -> Mosquitto:
        base = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
        os.chmod(base, 0o755)  # noqa: S103 - mosquitto runs as its own user
        stack = Stack.create(base, pg_port=0, redis_port=0, mqtt_port=free_port(), durable=False)
        stack.start([stack.mosquitto])
        started.append((stack.mosquitto, base))
        return stack.mosquitto

    yield factory
    for broker, base in started:
        broker.stop()
        remove_tree(base)


def allow_publisher(broker: Mosquitto, uid: str, password: str) -> None:
    """A broker client `uid` that may publish on `fleet/{uid}/#` (what the vehicle service
    creates for a device, on a broker the vehicle service does not manage)."""
    broker.ctrl("createClient", uid, "-p", password)
    broker.ctrl("createRole", uid)
    broker.ctrl("addRoleACL", uid, "publishClientSend", f"fleet/{uid}/#", "allow")
    broker.ctrl("addClientRole", uid, uid)
