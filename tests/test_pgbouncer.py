"""The database clients through a real PgBouncer (Debian's) in transaction pooling mode, as
Kubernetes runs them: the services' SQLAlchemy engine (fleet_common.db) and location's own
asyncpg pools, with DATABASE_PGBOUNCER's arguments, and the engine without them failing;
then each service's key paths on the session's platform, which runs on PgBouncer.
"""

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fleet_common.db import PGBOUNCER_ASYNCPG_ARGS, create_engine


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


# The services' key paths through PgBouncer, as Kubernetes runs them (DATABASE_PGBOUNCER=true):
# the concurrency below makes PgBouncer hand each client transaction another server
# connection, which is where cached prepared statements or session state would break.

TIMEOUT_S = 30.0


class WebhookReceiver(ThreadingHTTPServer):
    """Records the bodies POSTed to it and answers 200."""

    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), _Recorded)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Recorded(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def webhook_receiver():
    server = WebhookReceiver()
    yield server
    server.shutdown()


async def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


async def eventually(probe, what: str):
    deadline = time.monotonic() + TIMEOUT_S
    while not (found := await probe()):
        assert time.monotonic() < deadline, f"{what} never happened"
        await asyncio.sleep(0.2)
    return found


def publish(uid: str, credentials: dict, port: int, fixes: list[dict]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(credentials["username"], credentials["password"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for fix in fixes:
            info = client.publish(f"fleet/{uid}/telemetry", json.dumps(fix), qos=1)
            info.wait_for_publish(TIMEOUT_S)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_every_service_works_through_pgbouncer_in_transaction_mode(
    platform, webhook_receiver
):
    async with httpx.AsyncClient(base_url=f"{platform.gateway}/api/v1", timeout=TIMEOUT_S) as api:
        # auth: registrations, logins and sessions side by side.
        tag = uuid.uuid4().hex[:8]
        accounts = [
            {
                "org_name": f"Pooled {tag} {i}",
                "email": f"pooled-{tag}-{i}@example.com",
                "password": "correct horse battery staple",
                "full_name": "Pooled admin",
            }
            for i in range(4)
        ]
        registered = await asyncio.gather(
            *(api.post("/auth/register", json=body) for body in accounts)
        )
        assert [r.status_code for r in registered] == [201] * 4, [r.text for r in registered]
        logins = await asyncio.gather(
            *(
                api.post("/auth/login", json={"email": body["email"], "password": body["password"]})
                for body in accounts
            )
        )
        assert [r.status_code for r in logins] == [200] * 4, [r.text for r in logins]
        headers = {"Authorization": f"Bearer {logins[0].json()['access_token']}"}
        refreshed = await api.post(
            "/auth/refresh", json={"refresh_token": logins[0].json()["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        me = await api.get("/auth/me", headers=headers)
        assert me.json()["user"]["email"] == accounts[0]["email"]

        # vehicle: vehicles and devices created, read, changed, deleted.
        vehicles = await asyncio.gather(
            *(
                api.post(
                    "/vehicles",
                    headers=headers,
                    json={"name": f"Van {i}", "plate": f"PGB-{tag}-{i}", "speed_limit_kph": 50},
                )
                for i in range(4)
            )
        )
        vehicles = [await created(r) for r in vehicles]
        uid = f"pgb-{tag}"
        device = await created(
            await api.post(
                "/devices",
                headers=headers,
                json={"uid": uid, "name": "Tracker", "vehicle_id": vehicles[0]["id"]},
            )
        )
        spare = await created(
            await api.post("/devices", headers=headers, json={"uid": f"{uid}-spare", "name": "S"})
        )
        renamed = await api.patch(
            f"/vehicles/{vehicles[1]['id']}", headers=headers, json={"name": "Renamed"}
        )
        assert renamed.json()["name"] == "Renamed", renamed.text
        listed = await api.get("/vehicles", headers=headers)
        assert {v["id"] for v in listed.json()["items"]} == {v["id"] for v in vehicles}
        assert (await api.delete(f"/devices/{spare['id']}", headers=headers)).status_code == 204
        gone = await api.get(f"/devices/{spare['id']}", headers=headers)
        assert gone.status_code == 404

        # notification: a rule that delivers the overspeed by webhook (the delivery queue).
        await created(
            await api.post(
                "/alert-rules",
                headers=headers,
                json={
                    "name": "Speeding",
                    "event_types": ["overspeed"],
                    "channels": ["in_app", "webhook"],
                    "cooldown_s": 0,
                    "recipients": {
                        "webhook": {"url": webhook_receiver.url, "secret": "s3cret-" * 4}
                    },
                },
            )
        )

        # location: telemetry committed in batches while history is read beside it. The fixes
        # are a minute old, so the device is offline between the batches: the speeding is in
        # the second only, one overspeed episode.
        start = datetime.now(UTC) - timedelta(minutes=1)
        fixes = [
            {
                "ts": (start + timedelta(seconds=i)).isoformat(),
                "lat": 10.77 + i * 0.001,
                "lon": 106.7,
                "speed": 30 if i < 8 else 90,
            }
            for i in range(12)
        ]
        history_url = f"/vehicles/{vehicles[0]['id']}/history"
        window = {
            "from": (start - timedelta(minutes=1)).isoformat(),
            "to": datetime.now(UTC).isoformat(),
        }

        async def points() -> list[dict]:
            response = await api.get(history_url, headers=headers, params=window)
            assert response.status_code == 200, response.text
            return response.json()["points"]

        for part in (fixes[:6], fixes[6:]):
            await asyncio.to_thread(publish, uid, device["credentials"], platform.mqtt_port, part)
            await asyncio.gather(*(points() for _ in range(4)))

        async def all_points() -> list[dict]:
            found = await points()
            return found if len(found) == len(fixes) else []

        stored = await eventually(all_points, "every position stored")
        assert [p["lat"] for p in stored] == [f["lat"] for f in fixes]
        latest = (await api.get("/positions/latest", headers=headers)).json()["items"]
        assert [p["lat"] for p in latest] == [fixes[-1]["lat"]]

        async def alerts() -> list[dict]:
            return (await api.get("/alerts", headers=headers)).json()["items"]

        raised = await eventually(alerts, "the overspeed alert")
        assert [a["type"] for a in raised] == ["overspeed"]
        acked = await api.post(f"/alerts/{raised[0]['id']}/ack", headers=headers)
        assert acked.status_code == 200, acked.text
        await eventually(lambda: asyncio.sleep(0, webhook_receiver.bodies), "the webhook call")
        assert [b["alert"]["id"] for b in webhook_receiver.bodies] == [raised[0]["id"]]
