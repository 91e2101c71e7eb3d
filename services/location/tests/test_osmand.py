"""OsmAnd over HTTP, in every shape OsmAnd and Traccar Client send, and hostile requests."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from fleet_location.ingest.parsing import Reason

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def device(org_a, make_device):
    return make_device(org_a, protocol="osmand")


async def fetch(db, device, ts: datetime):
    return await db.fetchrow(
        "SELECT ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, speed_kph, heading_deg,"
        " altitude_m, accuracy_m, battery_pct, odometer_km, attrs FROM telemetry"
        " WHERE device_id = $1 AND recorded_at = $2",
        uuid.UUID(device.device_id),
        ts,
    )


def at(seconds_ago: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


async def test_get_query(client, db, device):
    ts = at(100)
    response = await client.get(
        "/ingest/osmand",
        params={
            "id": device.uid,
            "lat": "10.5",
            "lon": "106.25",
            "timestamp": int(ts.timestamp()),
            "speed": "10",
            "bearing": "90",
            "altitude": "5",
            "accuracy": "3",
            "batt": "77",
        },
    )
    assert response.status_code == 200, response.text
    row = await fetch(db, device, ts)
    assert (row["lat"], row["lon"], row["heading_deg"], row["altitude_m"]) == (10.5, 106.25, 90, 5)
    assert row["speed_kph"] == pytest.approx(18.52)  # knots
    assert (row["accuracy_m"], row["battery_pct"]) == (3, 77)


async def test_post_form_with_milliseconds(client, db, device):
    ts = at(90)
    response = await client.post(
        "/ingest/osmand",
        data={
            "deviceid": device.uid,
            "lat": "10.6",
            "lon": "106.3",
            "timestamp": str(int(ts.timestamp() * 1000)),
            "speed": "0",
        },
    )
    assert response.status_code == 200, response.text
    assert (await fetch(db, device, ts))["lat"] == 10.6


async def test_post_with_query_string_and_location_pair(client, db, device):
    """Traccar Client for Android posts its parameters in the URL, with an empty body (and
    clients do not always encode the `+` of an ISO offset)."""
    ts = at(80)
    response = await client.post(
        f"/ingest/osmand?id={device.uid}&timestamp={ts.isoformat()}&location=10.7,106.4"
        "&odometer=1500&hdop=0.8&charge=true"
    )
    assert response.status_code == 200, response.text
    row = await fetch(db, device, ts)
    assert (row["lat"], row["lon"], row["odometer_km"]) == (10.7, 106.4, 1.5)
    assert row["attrs"] == '{"hdop": "0.8", "charge": "true"}'


async def test_traccar_client_json(client, db, device):
    ts = at(70)
    body = {
        "device_id": device.uid,
        "location": {
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "coords": {
                "latitude": 10.8,
                "longitude": 106.5,
                "accuracy": 6.5,
                "speed": 5,
                "heading": 180,
                "altitude": 9,
            },
            "is_moving": True,
            "odometer": 2500,
            "battery": {"level": 0.5, "is_charging": True},
        },
    }
    response = await client.post("/ingest/osmand", json=body)
    assert response.status_code == 200, response.text
    row = await fetch(db, device, ts)
    assert (row["lat"], row["heading_deg"], row["battery_pct"], row["odometer_km"]) == (
        10.8,
        180,
        50.0,
        2.5,
    )
    assert row["speed_kph"] == pytest.approx(18.0)  # m/s


def counted(reason: str) -> float:
    return REGISTRY.get_sample_value("telemetry_rejected_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"lat": "1", "lon": "2"}, 400, Reason.MISSING_FIELD),
        ({"id": "{uid}", "lon": "2"}, 400, Reason.MISSING_FIELD),
        ({"id": "{uid}", "lat": "abc", "lon": "2"}, 400, Reason.INVALID_PAYLOAD),
        ({"id": "{uid}", "lat": "91", "lon": "2"}, 422, Reason.OUT_OF_RANGE),
        ({"id": "{uid}", "lat": "nan", "lon": "2"}, 422, Reason.NON_FINITE),
        (
            {"id": "{uid}", "lat": "1", "lon": "2", "timestamp": "4102444800"},
            422,
            Reason.FUTURE_TIMESTAMP,
        ),
        ({"id": "{uid}", "lat": "1", "lon": "2", "timestamp": "1000"}, 422, Reason.STALE_TIMESTAMP),
        ({"id": "no-such-device", "lat": "1", "lon": "2"}, 404, Reason.UNKNOWN_DEVICE),
        ({"id": "../../admin?x=", "lat": "1", "lon": "2"}, 404, Reason.UNKNOWN_DEVICE),
        ({"id": "{uid}\x00", "lat": "1", "lon": "2"}, 404, Reason.UNKNOWN_DEVICE),
    ],
)
async def test_refused_queries(client, device, params, status, reason):
    params = {k: v.replace("{uid}", device.uid) for k, v in params.items()}
    before = counted(reason)
    response = await client.get("/ingest/osmand", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == reason
    assert counted(reason) == before + 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{broken", "application/json", 400),
        (b'{"device_id": "x", "location": 5}', "application/json", 400),
        (b"\xff\xfe\xfd", "application/x-www-form-urlencoded", 400),
        (b"<xml/>", "application/xml", 400),
        (b"a=" + b"x" * 300_000, "application/x-www-form-urlencoded", 413),
        (b"&".join(b"k%d=v" % i for i in range(200)), "application/x-www-form-urlencoded", 400),
    ],
)
async def test_hostile_bodies(client, body, content_type, status):
    response = await client.post(
        "/ingest/osmand", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_inactive_device_is_refused(client, org_a, make_device, vehicle_service):
    import httpx

    device = make_device(org_a, protocol="osmand")
    async with httpx.AsyncClient(base_url=vehicle_service.url) as http:
        patched = await http.patch(
            f"/api/v1/devices/{device.device_id}", headers=org_a.headers(), json={"active": False}
        )
        assert patched.status_code == 200
    # The vehicle service announces the change; the cache drops the entry, the next lookup
    # sees the inactive device.
    for _ in range(50):
        response = await client.get(
            "/ingest/osmand", params={"id": device.uid, "lat": "1", "lon": "2"}
        )
        if response.status_code == 404:
            break
    assert response.json()["reason"] == Reason.INACTIVE_DEVICE
