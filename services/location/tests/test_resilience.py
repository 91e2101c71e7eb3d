"""Never lose a position: kill -9 mid-stream, PostgreSQL down, Redis down, the broker down
at start and restarted."""

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fleet_common.redis import latest_key
from fleet_location.main import create_app

from .conftest import DevicePublisher, allow_publisher, settings_from

pytestmark = pytest.mark.slow


def stream(publisher, uid: str, count: int, start: datetime, rate_per_s: float) -> threading.Thread:
    """Publish `count` QoS 1 positions, one every 1/rate s, from a thread."""

    def run() -> None:
        interval = 1.0 / rate_per_s
        began = time.monotonic()
        for i in range(count):
            ts = (start + timedelta(milliseconds=100 * i)).isoformat()
            info = publisher.client.publish(
                f"fleet/{uid}/telemetry", f'{{"ts": "{ts}", "lat": 1.0, "lon": {i * 1e-4}}}', qos=1
            )
            info.wait_for_publish(30)
            delay = began + (i + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def exactly_once(db, device, count: int) -> None:
    total, distinct = await db.fetchrow(
        "SELECT count(*), count(DISTINCT recorded_at) FROM telemetry WHERE device_id = $1",
        uuid.UUID(device.device_id),
    )
    assert (total, distinct) == (count, count)


async def test_kill_9_mid_stream_then_restart_loses_nothing(
    org_a,
    make_device,
    connect_device,
    migrated_database,
    location_env_for,
    run_service,
    wait_for,
    db_for,
):
    database_url = migrated_database("location")
    db = await db_for(database_url)
    env = location_env_for(database_url, LOCATION_MQTT_CLIENT_ID=f"kill9-{uuid.uuid4().hex[:6]}")
    first = run_service("location", env)
    await wait_for(lambda: _ready(first.url))
    device = make_device(org_a)
    publisher = connect_device(device)
    count = 3000
    sender = stream(publisher, device.uid, count, datetime.now(UTC) - timedelta(hours=1), 1000)

    async def stored() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device.device_id)
        )

    await wait_for(lambda: _at_least(stored(), 600), timeout_s=30)
    first.process.kill()  # SIGKILL: no shutdown, unacknowledged messages stay on the broker
    first.process.wait(10)
    killed_at = await stored()
    assert killed_at < count, "the stream was not interrupted"
    second = run_service("location", env)  # the same client id: the same broker session
    await asyncio.to_thread(sender.join, 60)
    await wait_for(lambda: _at_least(stored(), count), timeout_s=60)
    await exactly_once(db, device, count)
    second.process.terminate()


async def test_postgres_down_for_10_s_loses_nothing(
    make_stack,
    migrated_database,
    location_env_for,
    start_location,
    org_a,
    make_device,
    connect_device,
    wait_for,
    db_for,
):
    """PostgreSQL stopped for 10 s (shortened from 30 s: the batch is retried with back-off
    capped at 5 s, so any outage longer than the cap behaves the same) during a stream.
    With few positions allowed to wait for their commit, the consumer soon stops reading
    (the broker keeps the rest) and reads on once the backlog is committed."""
    private = make_stack()
    database_url = migrated_database("location", on=private)
    env = location_env_for(database_url, LOCATION_MAX_PENDING_POSITIONS="100")
    async with start_location(env) as (app, client):
        db = await db_for(database_url)
        device = make_device(org_a)
        publisher = connect_device(device)
        count = 600
        sender = stream(publisher, device.uid, count, datetime.now(UTC) - timedelta(hours=1), 40)

        async def stored() -> int:
            return await db.fetchval(
                "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device.device_id)
            )

        await wait_for(lambda: _at_least(stored(), 50))
        await asyncio.to_thread(private.postgres.stop)
        readiness = await client.get("/health/readiness")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["database"].startswith("down")
        await asyncio.sleep(10)  # the outage itself
        assert app.state.ingest.last_commit_error is not None
        # ~400 messages sent meanwhile: they wait on the broker, not in the service's inbox.
        assert app.state.mqtt.reading_paused
        assert len(app.state.ingest.inbox) < 20
        await asyncio.to_thread(private.postgres.start)
        await asyncio.to_thread(sender.join, 60)
        await db.expire_connections()
        await wait_for(lambda: _at_least(stored(), count), timeout_s=60)
        await exactly_once(db, device, count)
        assert not app.state.mqtt.reading_paused
        assert (await client.get("/health/readiness")).status_code == 200


async def test_redis_down_positions_still_stored_and_readiness_degraded(
    make_stack,
    migrated_database,
    location_env_for,
    start_location,
    org_a,
    make_device,
    connect_device,
    wait_for,
    db_for,
):
    private = make_stack()
    database_url = migrated_database("location")
    env = location_env_for(database_url, REDIS_URL=private.redis.url)
    async with start_location(env) as (app, client):
        db = await db_for(database_url)
        device = make_device(org_a)
        publisher = connect_device(device)
        await asyncio.to_thread(private.redis.stop)
        count = 50
        sender = stream(publisher, device.uid, count, datetime.now(UTC) - timedelta(minutes=5), 100)
        await asyncio.to_thread(sender.join, 30)

        async def stored() -> int:
            return await db.fetchval(
                "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device.device_id)
            )

        await wait_for(lambda: _at_least(stored(), count), timeout_s=30)
        readiness = await client.get("/health/readiness")
        assert readiness.status_code == 200
        assert readiness.json()["status"] == "degraded"
        assert readiness.json()["checks"]["redis"].startswith("down")
        latest = await client.get("/api/v1/positions/latest", headers=org_a.headers())
        assert latest.status_code == 503
        assert latest.headers["content-type"] == "application/problem+json"

        await asyncio.to_thread(private.redis.start)
        redis = app.state.redis

        async def latest_repaired() -> bool:
            ts = datetime.now(UTC).isoformat()
            publisher.publish(
                f"fleet/{device.uid}/telemetry", f'{{"ts": "{ts}", "lat": 2, "lon": 2}}'
            )
            return bool(await redis.hget(latest_key(device.org_id), device.device_id))

        await wait_for(latest_repaired, timeout_s=30, interval_s=0.5)
        assert (await client.get("/health/readiness")).json()["status"] == "ok"


async def test_broker_down_at_start_then_restarted_the_service_connects_and_ingests(
    make_broker, migrated_database, location_env_for, org_a, make_device, wait_for, db_for
):
    """The service starts while the broker is down (up, not ready), connects once the broker
    is up, and after a broker restart reconnects on its own and ingests again."""
    broker = make_broker()
    device = make_device(org_a)
    allow_publisher(broker, device.uid, device.password)
    await asyncio.to_thread(broker.stop)
    database_url = migrated_database("location")
    db = await db_for(database_url)
    env = location_env_for(
        database_url,
        MQTT_PORT=str(broker.port),
        LOCATION_MQTT_USERNAME=broker.ingest_username,
        LOCATION_MQTT_PASSWORD=broker.ingest_password,
    )
    app = create_app(settings_from(env))

    async def stored() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1", uuid.UUID(device.device_id)
        )

    async def publish(first: int, count: int) -> None:
        publisher = await asyncio.to_thread(
            DevicePublisher, broker.port, device.uid, device.password
        )
        start = datetime.now(UTC) - timedelta(hours=1)
        for i in range(first, first + count):
            ts = (start + timedelta(seconds=i)).isoformat()
            payload = f'{{"ts": "{ts}", "lat": 1.0, "lon": {i * 1e-4}}}'
            await asyncio.to_thread(publisher.publish, f"fleet/{device.uid}/telemetry", payload)
        await asyncio.to_thread(publisher.close)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def mqtt_check() -> str:
                response = await client.get("/health/readiness")
                return response.json()["checks"]["mqtt"]

            assert (await mqtt_check()).startswith("down")
            await asyncio.sleep(1.0)  # a few attempts fail meanwhile
            assert (await client.get("/health/liveness")).status_code == 200
            await asyncio.to_thread(broker.start)
            await wait_for(lambda: _equals(mqtt_check(), "ok"), timeout_s=30)
            await publish(0, 20)
            await wait_for(lambda: _at_least(stored(), 20), timeout_s=30)

            await asyncio.to_thread(broker.stop)
            await wait_for(lambda: _startswith(mqtt_check(), "down"), timeout_s=30)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)
            await wait_for(lambda: _equals(mqtt_check(), "ok"), timeout_s=30)
            await publish(20, 20)
            await wait_for(lambda: _at_least(stored(), 40), timeout_s=30)
            await exactly_once(db, device, 40)


async def _equals(awaitable, value) -> bool:
    return (await awaitable) == value


async def _startswith(awaitable, prefix: str) -> bool:
    return (await awaitable).startswith(prefix)


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as http:
        try:
            return (await http.get(f"{url}/health/readiness")).status_code == 200
        except httpx.HTTPError:
            return False


async def _at_least(awaitable, n: int) -> bool:
    return (await awaitable) >= n
