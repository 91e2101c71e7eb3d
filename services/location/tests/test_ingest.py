"""MQTT and OsmAnd ingest end to end: real broker, real vehicle service, real PostgreSQL and
Redis; the location app in-process."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import REGISTRY

from fleet_common.redis import geo_key, latest_key, live_channel
from fleet_location.ingest.parsing import Reason
from fleet_location.positions.model import Position


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("telemetry_rejected_total", {"reason": reason}) or 0.0


class RecordingObserver:
    """A PositionObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.positions: list[Position] = []
        self.statuses: list[dict] = []

    async def positions_committed(self, positions):
        self.positions.extend(positions)

    async def device_status(self, **kwargs):
        self.statuses.append(kwargs)


class FailingObserver:
    async def positions_committed(self, positions):
        raise RuntimeError("observer bug")

    async def device_status(self, **kwargs):
        raise RuntimeError("observer bug")


@pytest.fixture(scope="module")
def observer(app):
    recording = RecordingObserver()
    # Alongside the app's own (event detection): one that fails must not disturb the rest.
    original = list(app.state.position_observers)
    app.state.position_observers[:] = [FailingObserver(), recording, *original]
    yield recording
    app.state.position_observers[:] = original


@pytest.fixture(scope="module")
def device(org_a, make_device):
    return make_device(org_a)


@pytest.fixture(scope="module")
def publisher(device, connect_device):
    return connect_device(device)


async def test_every_mqtt_form_is_stored_and_goes_live(
    app, device, publisher, observer, db, redis, wait_for, stored_count
):
    now = datetime.now(UTC).replace(microsecond=0)
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(device.org_id))
    topic = f"fleet/{device.uid}/telemetry"
    publisher.publish(
        topic,
        {
            "ts": iso(now - timedelta(seconds=50)),
            "lat": 10.0,
            "lon": 106.0,
            "speed": 42.5,
            "heading": 270,
            "alt": 12.0,
            "accuracy": 4.5,
            "battery": 87,
            "ignition": True,
            "odometer": 10234.7,
            "attrs": {"fuel": 63},
        },
    )
    publisher.publish(
        topic,
        [
            {"ts": (now - timedelta(seconds=40)).timestamp(), "lat": 10.001, "lon": 106.0},
            {"ts": (now - timedelta(seconds=30)).timestamp(), "lat": 10.002, "lon": 106.0},
        ],
    )
    publisher.publish(
        f"owntracks/{device.uid}/phone",
        {
            "_type": "location",
            "lat": 10.003,
            "lon": 106.0,
            "tst": int((now - timedelta(seconds=20)).timestamp()),
            "vel": 20,
        },
    )
    publisher.publish(f"owntracks/{device.uid}/phone", {"_type": "transition", "event": "leave"})
    await wait_for(lambda: _at_least(stored_count(device.device_id), 4))

    row = await db.fetchrow(
        "SELECT org_id, vehicle_id, speed_kph, heading_deg, altitude_m, accuracy_m, battery_pct,"
        " ignition, odometer_km, attrs, ST_Y(geog::geometry) AS lat FROM telemetry"
        " WHERE device_id = $1 ORDER BY recorded_at LIMIT 1",
        uuid.UUID(device.device_id),
    )
    assert str(row["org_id"]) == device.org_id
    assert str(row["vehicle_id"]) == device.vehicle_id
    assert (row["speed_kph"], row["heading_deg"], row["altitude_m"]) == (42.5, 270, 12.0)
    assert (row["accuracy_m"], row["battery_pct"], row["ignition"]) == (4.5, 87, True)
    assert row["odometer_km"] == 10234.7
    assert json.loads(row["attrs"]) == {"fuel": 63}
    assert row["lat"] == 10.0

    latest = await wait_for(lambda: redis.hget(latest_key(device.org_id), device.device_id))
    document = json.loads(latest)
    assert document["recorded_at"] == f"{iso(now - timedelta(seconds=20))[:-1]}.000000Z"
    assert document["lat"] == 10.003
    assert document["speed_kph"] == 20
    assert set(document) == {
        "device_id",
        "vehicle_id",
        "org_id",
        "recorded_at",
        "lat",
        "lon",
        "speed_kph",
        "heading_deg",
        "altitude_m",
        "accuracy_m",
        "battery_pct",
        "ignition",
        "odometer_km",
        "attrs",
    }
    (geo,) = await redis.geopos(geo_key(device.org_id), device.device_id)
    assert geo[1] == pytest.approx(10.003, abs=1e-5)

    messages = []
    deadline = time.monotonic() + 5
    while len(messages) < 4 and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message:
            messages.append(orjson.loads(message["data"]))
    await pubsub.aclose()
    assert [m["type"] for m in messages] == ["position"] * 4
    assert messages[-1]["data"] == document

    await wait_for(
        lambda: _async(
            len([p for p in observer.positions if str(p.device_id) == device.device_id]) >= 4
        )
    )
    mine = [p for p in observer.positions if str(p.device_id) == device.device_id]
    assert [p.recorded_at for p in mine] == sorted(p.recorded_at for p in mine)
    failures = REGISTRY.get_sample_value(
        "telemetry_observer_errors_total", {"observer": "FailingObserver"}
    )
    assert failures
    assert failures >= 1


async def test_duplicates_are_stored_once(device, publisher, db, wait_for, stored_count, app):
    before = await stored_count(device.device_id)
    ts = iso(datetime.now(UTC) - timedelta(seconds=5))
    payload = {"ts": ts, "lat": 11.0, "lon": 106.0}
    duplicates_before = REGISTRY.get_sample_value("telemetry_duplicates_total") or 0
    for _ in range(3):
        publisher.publish(f"fleet/{device.uid}/telemetry", payload)
    await wait_for(
        lambda: _async(
            (REGISTRY.get_sample_value("telemetry_duplicates_total") or 0) >= duplicates_before + 2
        )
    )
    assert await stored_count(device.device_id) == before + 1


async def test_late_data_does_not_move_latest(device, publisher, redis, wait_for, stored_count):
    newest = datetime.now(UTC) - timedelta(seconds=1)
    publisher.publish(
        f"fleet/{device.uid}/telemetry", {"ts": iso(newest), "lat": 12.0, "lon": 106.0}
    )
    await wait_for(lambda: _latest_lat(redis, device, 12.0))
    before = await stored_count(device.device_id)
    publisher.publish(
        f"fleet/{device.uid}/telemetry",
        {"ts": iso(newest - timedelta(minutes=3)), "lat": 13.0, "lon": 106.0},
    )
    await wait_for(lambda: _at_least(stored_count(device.device_id), before + 1))
    document = json.loads(await redis.hget(latest_key(device.org_id), device.device_id))
    assert document["lat"] == 12.0


async def test_status_messages_reach_observers(device, publisher, observer, wait_for):
    publisher.publish(f"fleet/{device.uid}/status", "offline")
    publisher.publish(f"fleet/{device.uid}/status", "online")
    await wait_for(lambda: _async(len(observer.statuses) >= 2))
    assert [s["online"] for s in observer.statuses[-2:]] == [False, True]
    assert str(observer.statuses[-1]["device_id"]) == device.device_id
    assert str(observer.statuses[-1]["org_id"]) == device.org_id


async def test_every_mqtt_rejection_is_counted_and_kept(
    app, client, org_a, org_b, device, publisher, stack, wait_for, connect_device
):
    topic = f"fleet/{device.uid}/telemetry"
    old = (datetime.now(UTC) - timedelta(days=400)).timestamp()
    future = (datetime.now(UTC) + timedelta(hours=1)).timestamp()
    cases = {
        Reason.INVALID_JSON: b"{not json",
        Reason.INVALID_PAYLOAD: b'{"lat": "north", "lon": 1}',
        Reason.MISSING_FIELD: b'{"lon": 1}',
        Reason.OUT_OF_RANGE: b'{"lat": 95, "lon": 1}',
        Reason.NON_FINITE: b'{"lat": "NaN", "lon": 1}',
        Reason.FUTURE_TIMESTAMP: json.dumps({"lat": 1, "lon": 1, "ts": future}).encode(),
        Reason.STALE_TIMESTAMP: json.dumps({"lat": 1, "lon": 1, "ts": old}).encode(),
        Reason.TOO_LARGE: b'{"lat": 1, "lon": 1, "attrs": {"pad": "' + b"x" * 300_000 + b'"}}',
    }
    before = {reason: rejected(reason) for reason in cases}
    for payload in cases.values():
        publisher.publish(topic, payload)
    publisher.publish(f"fleet/{device.uid}/status", "sleeping")

    # An unknown device: a broker client the vehicle service never registered.
    uid = f"ghost-{uuid.uuid4().hex[:8]}"
    stack.mosquitto.ctrl("createClient", uid, "-p", "ghost-password")
    stack.mosquitto.ctrl("createRole", uid)
    stack.mosquitto.ctrl("addRoleACL", uid, "publishClientSend", f"fleet/{uid}/#", "allow")
    stack.mosquitto.ctrl("addClientRole", uid, uid)
    ghost = connect_device(uid=uid, password="ghost-password")
    unknown_before = rejected(Reason.UNKNOWN_DEVICE)
    for _ in range(50):  # a flood: counted every time, looked up and dead-lettered once
        ghost.publish(f"fleet/{uid}/telemetry", b'{"lat": 1, "lon": 1}')
    ghost.close()

    await wait_for(lambda: _async(all(rejected(r) >= before[r] + 1 for r in cases)))
    await wait_for(lambda: _async(rejected(Reason.UNKNOWN_DEVICE) >= unknown_before + 50))

    async def kept():
        response = await client.get("/api/v1/ingest/rejections?limit=500", headers=org_a.headers())
        assert response.status_code == 200
        return {item["reason"] for item in response.json()["items"]} >= set(cases)

    await wait_for(kept)
    response = await client.get("/api/v1/ingest/rejections", headers=org_a.headers())
    item = next(i for i in response.json()["items"] if i["reason"] == Reason.INVALID_JSON)
    assert item["payload"] == "{not json"
    assert item["device_uid"] == device.uid
    # Another org's admin sees none of it; non-admins may not look.
    other = await client.get("/api/v1/ingest/rejections", headers=org_b.headers())
    assert other.status_code == 200
    assert other.json()["items"] == []
    viewer = await client.get("/api/v1/ingest/rejections", headers=org_a.headers("viewer"))
    assert viewer.status_code == 403
    # Unknown devices belong to no org: operators see them on the internal route, once.
    token = stack.secrets["internal_token"]

    async def ghost_kept():
        page = await client.get(
            "/internal/ingest/rejections?reason=unknown_device&limit=500",
            headers={"X-Internal-Token": token},
        )
        return [i for i in page.json()["items"] if i["device_uid"] == uid]

    assert len(await wait_for(ghost_kept)) == 1
    assert (await client.get("/internal/ingest/rejections")).status_code == 403
    assert app.state.mqtt.is_connected()  # the consumer never died


async def test_device_changes_reach_the_cache(
    app, org_a, device, publisher, vehicle_service, db, wait_for, stored_count
):
    import httpx

    async with httpx.AsyncClient(base_url=vehicle_service.url) as http:
        created = await http.post(
            "/api/v1/vehicles",
            headers=org_a.headers(),
            json={"name": "Spare van", "plate": "SPARE-1"},
        )
        new_vehicle = created.json()["id"]
        moved = await http.patch(
            f"/api/v1/devices/{device.device_id}",
            headers=org_a.headers(),
            json={"vehicle_id": new_vehicle},
        )
        assert moved.status_code == 200, moved.text

    async def remapped():
        ts = iso(datetime.now(UTC))
        publisher.publish(f"fleet/{device.uid}/telemetry", {"ts": ts, "lat": 14.0, "lon": 106.0})
        vehicle = await db.fetchval(
            "SELECT vehicle_id FROM telemetry WHERE device_id = $1 ORDER BY recorded_at DESC"
            " LIMIT 1",
            uuid.UUID(device.device_id),
        )
        return str(vehicle) == new_vehicle

    await wait_for(remapped, interval_s=0.3)


async def test_storage_error_isolated_to_the_bad_row(app, device, db):
    """A row the database refuses (here jsonb's NUL, which validation normally stops) is
    dead-lettered alone; the rest of its batch is stored."""
    writer = app.state.ingest.writer
    base = datetime.now(UTC) - timedelta(hours=2)

    def position(i: int, attrs: dict) -> Position:
        return Position(
            uuid.UUID(device.device_id),
            uuid.UUID(device.vehicle_id),
            uuid.UUID(device.org_id),
            base + timedelta(seconds=i),
            15.0,
            106.0,
            attrs=attrs,
        )

    batch = [position(i, {"ok": i}) for i in range(7)] + [position(7, {"bad": "\x00"})]
    result = await writer.write(batch, [])
    assert result.new == 7
    assert sorted(p.recorded_at for p in result.stored) == [p.recorded_at for p in batch[:7]]
    assert [r.reason for r in result.failed] == [Reason.STORAGE_ERROR]
    kept = await db.fetchval(
        "SELECT count(*) FROM telemetry_rejections WHERE reason = 'storage_error' AND org_id = $1",
        uuid.UUID(device.org_id),
    )
    assert kept == 1


async def test_a_position_committed_by_a_process_that_died_still_reaches_redis_and_observers(
    app, org_a, make_device, connect_device, observer, redis, wait_for, stored_count
):
    """The process that committed it died before its Redis update, event detection and
    PUBACK. The broker redelivers the message; the row is there already, and the position
    still becomes the latest and reaches the observers (detection), stored once."""
    device = make_device(org_a)
    publisher = connect_device(device)
    recorded_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    committed = Position(
        uuid.UUID(device.device_id),
        uuid.UUID(device.vehicle_id),
        uuid.UUID(device.org_id),
        recorded_at,
        21.0,
        105.8,
    )
    await app.state.ingest.writer.write([committed], [])
    assert await stored_count(device.device_id) == 1
    assert await redis.hget(latest_key(device.org_id), device.device_id) is None
    duplicates_before = REGISTRY.get_sample_value("telemetry_duplicates_total") or 0

    publisher.publish(
        f"fleet/{device.uid}/telemetry", {"ts": iso(recorded_at), "lat": 21.0, "lon": 105.8}
    )
    await wait_for(lambda: _latest_lat(redis, device, 21.0))

    def seen() -> list[datetime]:
        return [p.recorded_at for p in observer.positions if str(p.device_id) == device.device_id]

    await wait_for(lambda: _async(seen()))
    assert seen() == [recorded_at]
    assert await stored_count(device.device_id) == 1
    assert REGISTRY.get_sample_value("telemetry_duplicates_total") == duplicates_before + 1


async def _at_least(awaitable, n: int):
    return (await awaitable) >= n


async def _async(value):
    return value


async def _latest_lat(redis, device, lat: float) -> bool:
    raw = await redis.hget(latest_key(device.org_id), device.device_id)
    return raw is not None and json.loads(raw)["lat"] == lat
