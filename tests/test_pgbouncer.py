"""The services through a real PgBouncer in transaction pooling mode, as Kubernetes runs them.

Five service processes whose database URLs point at Debian's PgBouncer (DATABASE_PGBOUNCER=1),
each of its pools small enough that the services' connections share server connections:
sign-up and login (auth), a vehicle and a device with broker credentials (vehicle), positions
over MQTT stored and read back as latest and history (location, its own asyncpg pools), an
alert rule and the alerts it raises (notification).
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fleet_common.db import PGBOUNCER_ASYNCPG_ARGS, create_engine
from fleet_devstack.servers import PgBouncer, free_port
from fleet_devstack.stack import DATABASES, SERVICE_PORTS

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def pgbouncer(stack):
    # Beside the stack's PostgreSQL: a directory the postgres user can reach.
    port = free_port()
    bouncer = PgBouncer(stack.state_dir / f"pgbouncer-{port}", port, stack.postgres)
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="module")
def pooled_platform(stack, pgbouncer, migrated_database, run_service, tmp_path_factory):
    ports = {name: free_port() for name in SERVICE_PORTS}
    direct = {name: migrated_database(name) for name in DATABASES}
    env = stack.service_env(
        database_urls={name: pgbouncer.url(url.rsplit("/", 1)[1]) for name, url in direct.items()},
        service_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        keys_dir=tmp_path_factory.mktemp("keys"),
    )
    env.update(
        {
            "DATABASE_PGBOUNCER": "true",
            "REDIS_URL": stack.redis.url.rsplit("/", 1)[0] + "/8",
            "VEHICLE_DEVICE_GROUP": f"fleet-devices-pgb-{uuid.uuid4().hex[:8]}",
            "LOCATION_MQTT_CLIENT_ID": f"fleet-location-pgb-{uuid.uuid4().hex[:8]}",
            "LOCATION_MQTT_SHARE_GROUP": f"pgb{uuid.uuid4().hex[:8]}",
        }
    )
    for name in DATABASES:
        assert f":{pgbouncer.port}/" in env[f"{name.upper()}_DATABASE_URL"]
    services = {
        name: run_service(name, env, port=ports[name])
        for name in ["auth", "vehicle", "location", "notification", "gateway"]
    }
    return services, stack.mosquitto.port


async def test_the_key_paths_of_every_service_work_through_pgbouncer(pooled_platform):
    services, mqtt_port = pooled_platform
    async with httpx.AsyncClient(base_url=f"{services['gateway'].url}/api/v1", timeout=30) as api:
        suffix = uuid.uuid4().hex[:8]
        email, password = f"pgb-{suffix}@example.com", "correct horse battery staple"
        registered = await api.post(
            "/auth/register",
            json={
                "org_name": f"PgB {suffix}",
                "email": email,
                "password": password,
                "full_name": "Dispatcher",
            },
        )
        assert registered.status_code == 201, registered.text
        login = await api.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        refreshed = await api.post(
            "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text

        vehicle = await api.post(
            "/vehicles",
            headers=headers,
            json={"name": "Van", "plate": f"PGB-{suffix}", "speed_limit_kph": 50},
        )
        assert vehicle.status_code == 201, vehicle.text
        uid = f"pgb-{suffix}"
        device = await api.post(
            "/devices",
            headers=headers,
            json={"uid": uid, "name": "Tracker", "vehicle_id": vehicle.json()["id"]},
        )
        assert device.status_code == 201, device.text
        credentials = device.json()["credentials"]
        rule = await api.post(
            "/alert-rules",
            headers=headers,
            json={
                "name": "Speeding",
                "channels": ["in_app"],
                "cooldown_s": 0,
                "event_types": ["overspeed"],
            },
        )
        assert rule.status_code == 201, rule.text

        # Many small transactions at once: the services' connections share PgBouncer's.
        lists = await asyncio.gather(
            *(api.get(path, headers=headers) for path in ["/vehicles", "/devices"] * 10)
        )
        assert all(r.status_code == 200 for r in lists), [r.text for r in lists]

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
        client.username_pw_set(credentials["username"], credentials["password"])
        client.connect("127.0.0.1", mqtt_port)
        client.loop_start()
        start = datetime.now(UTC) - timedelta(minutes=1)
        try:
            for i in range(10):
                payload = {
                    "ts": (start + timedelta(seconds=5 * i)).isoformat(),
                    "lat": 10.77 + i * 0.001,
                    "lon": 106.70,
                    "speed": 80 if i >= 5 else 30,
                }
                info = client.publish(f"fleet/{uid}/telemetry", json.dumps(payload), qos=1)
                info.wait_for_publish(TIMEOUT_S)
        finally:
            client.loop_stop()
            client.disconnect()

        vehicle_id = vehicle.json()["id"]
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            history = await api.get(
                f"/vehicles/{vehicle_id}/history",
                headers=headers,
                params={
                    "from": (start - timedelta(minutes=1)).isoformat(),
                    "to": datetime.now(UTC).isoformat(),
                },
            )
            assert history.status_code == 200, history.text
            points = history.json()
            points = points.get("items", points.get("positions", points))
            if len(points) == 10:
                break
            assert time.monotonic() < deadline, f"history has {len(points)} of 10 positions"
            await asyncio.sleep(0.3)
        latest = await api.get("/positions/latest", headers=headers)
        assert latest.status_code == 200, latest.text
        assert str(latest.json()).count(vehicle_id) >= 1

        deadline = time.monotonic() + TIMEOUT_S
        while True:
            alerts = await api.get("/alerts", headers=headers)
            assert alerts.status_code == 200, alerts.text
            if any(a["type"] == "overspeed" for a in alerts.json()["items"]):
                break
            assert time.monotonic() < deadline, "no overspeed alert through PgBouncer"
            await asyncio.sleep(0.3)


async def many_queries(engine, count: int = 30) -> int:
    async def one(i: int) -> int:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT CAST(:i AS int)"), {"i": i})
            return result.scalar()

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


async def test_the_engine_setting_is_what_makes_transaction_pooling_work(pgbouncer):
    # Concurrent clients on few server connections: without the setting, a statement asyncpg
    # prepared and cached on one server connection is executed on another.
    url = pgbouncer.url("postgres")
    pooled = create_engine(url, pgbouncer=True)
    try:
        assert await many_queries(pooled) == sum(range(30))
    finally:
        await pooled.dispose()
    cached = create_engine(url)
    try:
        with pytest.raises(DBAPIError, match="prepared statement"):
            await many_queries(cached)
    finally:
        await cached.dispose()


async def test_location_pools_work_through_pgbouncer_with_the_setting(pgbouncer):
    dsn = pgbouncer.url("postgres").replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=8, **PGBOUNCER_ASYNCPG_ARGS)
    try:
        values = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(40)))
        assert values == list(range(40))
    finally:
        await pool.close()
