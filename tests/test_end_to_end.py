"""A device drives through geofences over MQTT; alerts reach /alerts and the org's WebSocket.

Everything is real: the five services as processes, Mosquitto with the device's own broker
credentials, PostgreSQL+PostGIS, Redis (issue 6's end-to-end tests).
"""

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import connect

TIMEOUT_S = 30.0
SPEED_LIMIT_KPH = 50

# A square polygon and a 300 m circle east of it, in Ho Chi Minh City.
POLYGON = {
    "type": "Polygon",
    "coordinates": [
        [
            [106.700, 10.770],
            [106.710, 10.770],
            [106.710, 10.780],
            [106.700, 10.780],
            [106.700, 10.770],
        ]
    ],
}
CIRCLE = {"type": "Circle", "center": [106.750, 10.770], "radius_m": 300}

# (lon, lat, speed_kph, battery_pct): outside -> polygon -> over the limit -> out -> slow
# again (ends the overspeed episode) -> circle with a low battery -> out.
ROUTE = [
    (106.690, 10.775, 30, 80),
    (106.705, 10.775, 40, 80),
    (106.706, 10.776, 70, 79),
    (106.715, 10.775, 85, 78),
    (106.730, 10.775, 30, 78),
    (106.750, 10.7705, 20, 15),
    (106.7505, 10.7702, 20, 14),
    (106.770, 10.770, 25, 12),
]


async def register(api: httpx.AsyncClient) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    response = await api.post(
        "/auth/register",
        json={
            "org_name": f"E2E {suffix}",
            "email": f"dispatch-{suffix}@example.com",
            "password": "correct horse battery staple",
            "full_name": "Dispatcher",
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def post(api: httpx.AsyncClient, path: str, headers: dict[str, str], body: dict) -> dict:
    response = await api.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def collect(ws_url: str, into: list[dict], stop: asyncio.Event) -> None:
    async with connect(ws_url) as socket:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(socket.recv(), 0.2)
            except TimeoutError:
                continue
            message = json.loads(raw)
            if message.get("type") == "ping":
                await socket.send(json.dumps({"type": "pong"}))
            else:
                into.append(message)


async def alerts_of(api: httpx.AsyncClient, headers: dict[str, str]) -> list[dict]:
    response = await api.get("/alerts?limit=100", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def wait_for_alerts(api, headers, predicate) -> list[dict]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        alerts = await alerts_of(api, headers)
        if predicate(alerts):
            return alerts
        assert time.monotonic() < deadline, f"alerts never matched; have {alerts}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def api(platform):
    async with httpx.AsyncClient(base_url=f"{platform.gateway}/api/v1", timeout=30) as client:
        yield client


async def test_a_drive_through_geofences_raises_each_alert_once_for_its_org_only(platform, api):
    gateway = platform.gateway
    headers = await register(api)
    other_headers = await register(api)

    vehicle = await post(
        api,
        "/vehicles",
        headers,
        {
            "name": "Truck 7",
            "plate": f"E2E-{uuid.uuid4().hex[:6]}",
            "type": "truck",
            "speed_limit_kph": SPEED_LIMIT_KPH,
        },
    )
    uid = f"e2e-{uuid.uuid4().hex[:12]}"
    device = await post(
        api,
        "/devices",
        headers,
        {
            "uid": uid,
            "name": "Tracker",
            "vehicle_id": vehicle["id"],
        },
    )
    credentials = device["credentials"]
    polygon = await post(api, "/geofences", headers, {"name": "Depot", "geometry": POLYGON})
    circle = await post(api, "/geofences", headers, {"name": "Customer", "geometry": CIRCLE})
    await post(
        api,
        "/alert-rules",
        headers,
        {
            "name": "Everything",
            "channels": ["in_app"],
            "cooldown_s": 0,
            "event_types": [
                "geofence_enter",
                "geofence_exit",
                "overspeed",
                "low_battery",
                "device_offline",
            ],
        },
    )

    ws_base = gateway.replace("http://", "ws://") + "/api/v1/ws?token="
    received: list[dict] = []
    received_by_other: list[dict] = []
    stop = asyncio.Event()
    listeners = [
        asyncio.create_task(collect(ws_base + headers["Authorization"][7:], received, stop)),
        asyncio.create_task(
            collect(ws_base + other_headers["Authorization"][7:], received_by_other, stop)
        ),
    ]
    await asyncio.sleep(0.5)  # both sockets subscribed before the first position

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(credentials["username"], credentials["password"])
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        for lon, lat, speed_kph, battery_pct in ROUTE:
            payload = {
                "ts": datetime.now(UTC).isoformat(),
                "lat": lat,
                "lon": lon,
                "speed": speed_kph,
                "battery": battery_pct,
                "ignition": True,
            }
            info = client.publish(f"fleet/{uid}/telemetry", json.dumps(payload), qos=1)
            info.wait_for_publish(TIMEOUT_S)
            # Positions a little apart in time, as a real device sends them (and well
            # within the 3 s of silence after which this platform calls a device offline).
            await asyncio.sleep(0.4)
    finally:
        client.loop_stop()
        client.disconnect()

    # Silence follows: the device goes offline, the last event of the drive.
    alerts = await wait_for_alerts(
        api, headers, lambda found: any(a["type"] == "device_offline" for a in found)
    )
    # Give any duplicate the time to show up before counting.
    await asyncio.sleep(1.5)
    alerts = await alerts_of(api, headers)
    stop.set()
    await asyncio.gather(*listeners)

    by_kind = Counter((a["type"], a["details"].get("geofence_id")) for a in alerts)
    assert by_kind == {
        ("geofence_enter", polygon["id"]): 1,
        ("geofence_exit", polygon["id"]): 1,
        ("geofence_enter", circle["id"]): 1,
        ("geofence_exit", circle["id"]): 1,
        ("overspeed", None): 1,
        ("low_battery", None): 1,
        ("device_offline", None): 1,
    }
    assert all(a["vehicle_id"] == vehicle["id"] for a in alerts)
    overspeed = next(a for a in alerts if a["type"] == "overspeed")
    assert overspeed["details"]["max_speed_kph"] == 85

    # The org's dashboard saw the same alerts and the positions live; the other org nothing.
    live_alerts = Counter(
        (m["data"]["type"], m["data"]["details"].get("geofence_id"))
        for m in received
        if m["type"] == "alert"
    )
    assert live_alerts == by_kind
    positions = [m["data"] for m in received if m["type"] == "position"]
    assert [(p["lon"], p["lat"]) for p in positions] == [(r[0], r[1]) for r in ROUTE]
    assert received_by_other == []
    assert await alerts_of(api, other_headers) == []


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"{}", b'{"lat": 999, "lon": 0, "ts": 0}', b"[" * 10_000, b"\xff" * 64],
)
async def test_hostile_telemetry_is_rejected_without_stopping_the_consumer(platform, api, payload):
    headers = await register(api)
    uid = f"e2e-{uuid.uuid4().hex[:12]}"
    device = await post(api, "/devices", headers, {"uid": uid, "name": "T"})
    credentials = device["credentials"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(credentials["username"], credentials["password"])
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        client.publish(f"fleet/{uid}/telemetry", payload, qos=1).wait_for_publish(TIMEOUT_S)
        good = {"ts": datetime.now(UTC).isoformat(), "lat": 10.77, "lon": 106.7}
        client.publish(f"fleet/{uid}/telemetry", json.dumps(good), qos=1).wait_for_publish(
            TIMEOUT_S
        )
    finally:
        client.loop_stop()
        client.disconnect()
    # The good position after the bad one still arrives: the consumer lives on.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        latest = (await api.get("/positions/latest", headers=headers)).json()
        if latest.get("items"):
            break
        assert time.monotonic() < deadline, "the good position never arrived"
        await asyncio.sleep(0.2)
    rejections = await api.get("/ingest/rejections", headers=headers)
    assert rejections.status_code == 200
    assert rejections.json()["items"], "the bad message was not kept for inspection"


async def test_rules_on_vehicle_groups_follow_the_vehicles_group(platform, api):
    """The vehicle's group travels from the vehicle service through the location service's
    device cache onto the event; a group change reaches that cache at once."""
    headers = await register(api)
    vehicle = await post(
        api,
        "/vehicles",
        headers,
        {"name": "Van 3", "plate": f"GRP-{uuid.uuid4().hex[:6]}", "group": "North"},
    )
    uid = f"e2e-{uuid.uuid4().hex[:12]}"
    device = await post(
        api, "/devices", headers, {"uid": uid, "name": "T", "vehicle_id": vehicle["id"]}
    )
    await post(api, "/geofences", headers, {"name": "Depot", "geometry": POLYGON})
    for group in ("North", "South"):
        await post(
            api,
            "/alert-rules",
            headers,
            {
                "name": group,
                "vehicle_groups": [group],
                "channels": ["in_app"],
                "cooldown_s": 0,
                "event_types": ["geofence_enter"],
            },
        )
    credentials = device["credentials"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(credentials["username"], credentials["password"])
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()

    async def drive(*points: tuple[float, float]) -> None:
        for lon, lat in points:
            payload = {"ts": datetime.now(UTC).isoformat(), "lat": lat, "lon": lon}
            client.publish(f"fleet/{uid}/telemetry", json.dumps(payload), qos=1).wait_for_publish(
                TIMEOUT_S
            )
            await asyncio.sleep(0.4)

    def enters(found: list[dict]) -> list[tuple[str, str | None]]:
        return sorted(
            (a["rule_name"], a["vehicle_group"]) for a in found if a["type"] == "geofence_enter"
        )

    try:
        await drive((106.690, 10.775), (106.705, 10.775))
        alerts = await wait_for_alerts(api, headers, lambda found: enters(found))
        assert enters(alerts) == [("North", "North")]

        response = await api.patch(
            f"/vehicles/{vehicle['id']}", json={"group": "South"}, headers=headers
        )
        assert response.status_code == 200
        await drive((106.690, 10.775), (106.705, 10.775))
        alerts = await wait_for_alerts(api, headers, lambda found: len(enters(found)) == 2)
        assert enters(alerts) == [("North", "North"), ("South", "South")]
        south = await api.get("/alerts", params={"vehicle_group": "South"}, headers=headers)
        assert [a["rule_name"] for a in south.json()["items"]] == ["South"]
    finally:
        client.loop_stop()
        client.disconnect()


async def test_maintenance_due_alerts_once_per_due_point_and_servicing_moves_it(platform, api):
    """The schedule travels from the vehicle service to the location service's detector; the
    device's odometer crosses it: one event, one alert (the rule has no cooldown); servicing
    at the counted meter moves the due point, and only its crossing alerts again."""
    headers = await register(api)
    vehicle = await post(
        api, "/vehicles", headers, {"name": "Truck", "plate": f"MNT-{uuid.uuid4().hex[:6]}"}
    )
    uid = f"e2e-{uuid.uuid4().hex[:12]}"
    device = await post(
        api, "/devices", headers, {"uid": uid, "name": "T", "vehicle_id": vehicle["id"]}
    )
    schedules = f"/vehicles/{vehicle['id']}/maintenance"
    oil = await post(
        api,
        schedules,
        headers,
        {"name": "Oil change", "meter": "odometer_km", "interval": 500, "next_due": 1000},
    )
    await post(
        api,
        "/alert-rules",
        headers,
        {
            "name": "Service",
            "channels": ["in_app"],
            "cooldown_s": 0,
            "event_types": ["maintenance_due"],
        },
    )
    credentials = device["credentials"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
    client.username_pw_set(credentials["username"], credentials["password"])
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()

    async def report(*odometers_km: float) -> None:
        for odometer_km in odometers_km:
            payload = {
                "ts": datetime.now(UTC).isoformat(),
                "lat": 10.775,
                "lon": 106.69,
                "odometer": odometer_km,
            }
            client.publish(f"fleet/{uid}/telemetry", json.dumps(payload), qos=1).wait_for_publish(
                TIMEOUT_S
            )
            await asyncio.sleep(0.05)

    def due(found: list[dict]) -> list[float]:
        return sorted(a["details"]["next_due"] for a in found if a["type"] == "maintenance_due")

    try:
        await report(990, 999.5, 1000.5, 1001, 1002)
        alerts = await wait_for_alerts(api, headers, due)
        [alert] = [a for a in alerts if a["type"] == "maintenance_due"]
        assert alert["vehicle_id"] == vehicle["id"]
        assert alert["details"]["maintenance_id"] == oil["id"]
        assert alert["details"]["reading"] == 1000.5

        listed = (await api.get(schedules, headers=headers)).json()["items"]
        assert (listed[0]["current_reading"], listed[0]["due"]) == (1002, True)
        serviced = await api.post(f"{schedules}/{oil['id']}/service", headers=headers)
        assert serviced.status_code == 200, serviced.text
        assert serviced.json()["next_due"] == 1502  # serviced at the counted 1002 km
        await report(1003, 1400)
        # Until the location service has the new due point, a crossing would find none.
        deadline = time.monotonic() + TIMEOUT_S
        odometer_km = 1502.0
        while len(due(await alerts_of(api, headers))) < 2:
            assert time.monotonic() < deadline, "the serviced schedule never came due"
            await report(odometer_km)
            odometer_km += 1
            await asyncio.sleep(0.2)
        assert due(await alerts_of(api, headers)) == [1000, 1502]
    finally:
        client.loop_stop()
        client.disconnect()
