"""Fixtures of the vehicle service's tests: the app in-process on the session stack, and
MQTT probes (devices and subscribers on the real broker, driven without sleeps: paho runs its
network loop in a thread, its callbacks hand results to the test's event loop, and every wait
has a timeout)."""

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from redis.asyncio import Redis

from fleet_common.redis import DEVICES_CHANNEL
from fleet_devstack.servers import Mosquitto, free_port, remove_tree
from fleet_vehicle.config import Settings
from fleet_vehicle.main import create_app

MQTT_TIMEOUT_S = 5.0
# The session broker is shared with other services' tests, which may run vehicle services of
# their own: a group of our own keeps their reconcile and ours off each other's devices.
DEVICE_GROUP = f"fleet-devices-test-{uuid.uuid4().hex[:8]}"
INTERNAL_TOKEN = "vehicle-tests-internal-token-0123456789abcdef"


def vehicle_settings(
    redis_url: str, broker: Mosquitto, database_url: str, auth_service, **overrides
) -> Settings:
    values = {
        "ENVIRONMENT": "test",
        "database_url": database_url,
        "REDIS_URL": redis_url,
        "AUTH_JWKS_URL": auth_service.jwks_url,
        "INTERNAL_SERVICE_TOKEN": INTERNAL_TOKEN,
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": broker.port,
        "mqtt_admin_username": broker.admin_username,
        "mqtt_admin_password": broker.admin_password,
        "broker_command_timeout_s": 3.0,
        "broker_startup_wait_s": 5.0,
        "device_group": DEVICE_GROUP,
        "command_share_group": f"vehicle-test-{uuid.uuid4().hex[:8]}",
        "command_expiry_sweep_interval_s": 0.5,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


@pytest.fixture(scope="session")
def vehicle_database(migrated_database) -> str:
    return migrated_database("vehicle")


@pytest.fixture(scope="session")
async def vehicle_app(stack, vehicle_database, auth_service):
    settings = vehicle_settings(stack.redis.url, stack.mosquitto, vehicle_database, auth_service)
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture(scope="session")
def make_vehicle_app(stack, auth_service):
    """Another app instance: `make_vehicle_app(database_url, broker, **settings)` is an async
    context manager giving (app, client)."""

    def factory(database_url: str, broker: Mosquitto, **overrides):
        return running_app(
            vehicle_settings(stack.redis.url, broker, database_url, auth_service, **overrides)
        )

    return factory


@pytest.fixture
def private_broker():
    """A broker of our own, to stop, wipe and restart."""
    base = Path(tempfile.mkdtemp(prefix="fleet-vehicle-mq-"))
    os.chmod(base, 0o755)  # noqa: S103 - the broker may run as the mosquitto user
    broker = Mosquitto(
        base / "mosquitto", free_port(), "admin-" + uuid.uuid4().hex, "ingest-" + uuid.uuid4().hex
    )
    broker.start()
    broker.stop()
    yield broker
    broker.stop()
    remove_tree(base)


@pytest.fixture(scope="session")
def device_group() -> str:
    return DEVICE_GROUP


@pytest.fixture(scope="session")
def internal_headers() -> dict[str, str]:
    return {"X-Internal-Token": INTERNAL_TOKEN}


@pytest.fixture(scope="session")
def app(vehicle_app) -> FastAPI:
    return vehicle_app[0]


@pytest.fixture(scope="session")
def client(vehicle_app) -> httpx.AsyncClient:
    return vehicle_app[1]


@pytest.fixture(scope="session")
def org_a(make_org):
    return make_org()


@pytest.fixture(scope="session")
def org_b(make_org):
    return make_org()


@pytest.fixture(scope="session")
async def redis(stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis.url)
    yield client
    await client.aclose()


class DeviceEvents:
    """Messages on `fleet:devices`, read as they come."""

    def __init__(self, pubsub) -> None:
        self._pubsub = pubsub

    async def next(self, timeout_s: float = 5.0) -> dict:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=timeout_s
                )
                if message is not None:
                    return json.loads(message["data"])

    async def wait_for(self, uid: str, action: str, timeout_s: float = 5.0) -> dict:
        """The next message about `uid` with `action`, skipping others."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.next(timeout_s)
                if event["uid"] == uid and event["action"] == action:
                    return event


@pytest.fixture
async def device_events(redis) -> AsyncIterator[DeviceEvents]:
    pubsub = redis.pubsub()
    await pubsub.subscribe(DEVICES_CHANNEL)
    await pubsub.get_message(timeout=1.0)  # the subscription confirmation
    yield DeviceEvents(pubsub)
    await pubsub.unsubscribe()
    await pubsub.aclose()


class MqttProbe:
    def __init__(self, port: int, username: str, password: str, client_id: str | None = None):
        self.port = port
        self._loop = asyncio.get_running_loop()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.messages: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._connected: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._disconnected = asyncio.Event()
        self._acks: dict[int, asyncio.Future] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _soon(self, fn, *args) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client, _u, _f, reason_code, _p) -> None:
        if reason_code.is_failure:
            client.disconnect()  # a probe never retries: the test wants each answer
        self._soon(lambda: self._connected.done() or self._connected.set_result(reason_code))

    def _on_disconnect(self, client, _u, _f, reason_code, _p) -> None:
        client.disconnect()  # stops paho's automatic reconnection

        def settle():
            if not self._connected.done():
                self._connected.set_result(reason_code)
            self._disconnected.set()

        self._soon(settle)

    def _on_message(self, _c, _u, message) -> None:
        self._soon(self.messages.put_nowait, message)

    def _ack(self, mid: int, value) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _on_subscribe(self, _c, _u, mid, reason_codes, _p) -> None:
        self._soon(self._ack, mid, list(reason_codes))

    def _on_publish(self, _c, _u, mid, reason_code, _p) -> None:
        self._soon(self._ack, mid, reason_code)

    async def connect(self) -> ReasonCode:
        """Connect once (no automatic reconnect); the broker's CONNACK reason code."""
        self.client.connect_async("127.0.0.1", self.port, keepalive=5)
        self.client.loop_start()
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            return await self._connected

    async def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        # The SUBACK callback reaches the loop via call_soon_threadsafe, so it cannot run
        # before the future is registered below (no await in between).
        future = self._loop.create_future()
        _rc, mid = self.client.subscribe(topic, qos=qos)
        self._acks[mid] = future
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            return await future

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish and wait for the broker's PUBACK (delivered to the broker, not beyond)."""
        future = self._loop.create_future()
        info = self.client.publish(topic, payload, qos=qos)
        self._acks[info.mid] = future
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            await future

    async def next_message(self, timeout_s: float = MQTT_TIMEOUT_S) -> mqtt.MQTTMessage:
        async with asyncio.timeout(timeout_s):
            return await self.messages.get()

    async def wait_disconnected(self, timeout_s: float = MQTT_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            await self._disconnected.wait()

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected()

    async def close(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


@pytest.fixture
async def mqtt_connect():
    """Connect probes to a broker; all are closed after the test."""
    probes: list[MqttProbe] = []

    async def factory(port: int, username: str, password: str) -> tuple[MqttProbe, ReasonCode]:
        probe = MqttProbe(port, username, password)
        probes.append(probe)
        return probe, await probe.connect()

    yield factory
    for probe in probes:
        await probe.close()
