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
            "key": device.http_key,
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
            "key": device.http_key,
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
        f"/ingest/osmand?key={device.http_key}&id={device.uid}&timestamp={ts.isoformat()}"
        "&location=10.7,106.4"
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
    response = await client.post("/ingest/osmand", params={"key": device.http_key}, json=body)
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
    ],
)
async def test_refused_queries(client, device, params, status, reason):
    params = {k: v.replace("{uid}", device.uid) for k, v in params.items()}
    params["key"] = device.http_key
    before = counted(reason)
    response = await client.get("/ingest/osmand", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == reason
    assert counted(reason) == before + 1


@pytest.mark.parametrize("uid", ["no-such-device", "../../admin?x=", "{uid}\x00"])
async def test_an_unknown_uid_is_answered_as_a_key_failure(client, device, uid):
    """The answers must not tell which uids exist; the counter keeps the real reason."""
    uid = uid.replace("{uid}", device.uid)
    before = counted(Reason.UNKNOWN_DEVICE)
    for key, status, known_reason in (
        (None, 401, Reason.MISSING_KEY),
        ("x", 403, Reason.INVALID_KEY),
    ):
        params = {"id": uid, "lat": "1", "lon": "2", **({"key": key} if key else {})}
        unknown = await client.get("/ingest/osmand", params=params)
        known = await client.get("/ingest/osmand", params={**params, "id": device.uid})
        assert unknown.status_code == known.status_code == status, unknown.text
        assert unknown.headers["content-type"] == PROBLEM
        assert unknown.json() == known.json()
        assert unknown.json()["reason"] == known_reason
    assert counted(Reason.UNKNOWN_DEVICE) == before + 2


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
            "/ingest/osmand",
            params={"id": device.uid, "key": device.http_key, "lat": "1", "lon": "2"},
        )
        if response.status_code == 404:
            break
    assert response.json()["reason"] == Reason.INACTIVE_DEVICE
    # Only the key's holder learns that the device is deactivated.
    forged = await client.get(
        "/ingest/osmand", params={"id": device.uid, "key": "x", "lat": "1", "lon": "2"}
    )
    assert forged.status_code == 403
    assert forged.json()["reason"] == Reason.INVALID_KEY


# ------------------------------------------------------------------ the device's HTTP key


def position(device, **extra) -> dict:
    return {"id": device.uid, "lat": "48.8566", "lon": "2.3522", **extra}


async def kept_payloads(db, device, reason: str) -> list[str]:
    rows = await db.fetch(
        "SELECT payload FROM telemetry_rejections WHERE device_uid = $1 AND reason = $2",
        device.uid,
        reason,
    )
    return [bytes(row["payload"]).decode() for row in rows]


async def test_a_position_without_the_devices_key_is_refused_and_kept(
    client, db, stored_count, org_a, make_device, wait_for
):
    device = make_device(org_a, protocol="osmand")
    before = counted(Reason.MISSING_KEY)
    response = await client.get("/ingest/osmand", params=position(device))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == Reason.MISSING_KEY
    assert counted(Reason.MISSING_KEY) == before + 1
    assert await wait_for(lambda: kept_payloads(db, device, Reason.MISSING_KEY))
    assert await stored_count(device.device_id) == 0


async def test_another_devices_key_is_refused_and_never_kept(
    client, db, stored_count, org_a, org_b, make_device, wait_for
):
    device = make_device(org_a, protocol="osmand")
    other = make_device(org_b, protocol="osmand")
    before = counted(Reason.INVALID_KEY)
    for key in (other.http_key, device.http_key[:-1], "x" * 10_000):
        response = await client.get("/ingest/osmand", params=position(device, key=key))
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["reason"] == Reason.INVALID_KEY
    assert counted(Reason.INVALID_KEY) == before + 3
    payloads = await wait_for(lambda: kept_payloads(db, device, Reason.INVALID_KEY))
    assert all(other.http_key not in p and "key=[redacted]" in p for p in payloads), payloads
    assert await stored_count(device.device_id) == 0
    # The right key still works, and is not kept as an attribute of the position.
    ts = at(30)
    response = await client.get(
        "/ingest/osmand",
        params=position(device, key=device.http_key, timestamp=int(ts.timestamp())),
    )
    assert response.status_code == 200, response.text
    assert (await fetch(db, device, ts))["attrs"] in (None, "{}")


async def test_rotating_the_credentials_replaces_the_key(
    client, org_a, make_device, vehicle_service
):
    import httpx

    device = make_device(org_a, protocol="osmand")
    async with httpx.AsyncClient(base_url=vehicle_service.url) as http:
        rotated = await http.post(
            f"/api/v1/devices/{device.device_id}/credentials", headers=org_a.headers("dispatcher")
        )
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["http_key"]
    assert new_key != device.http_key
    for _ in range(50):  # until the fleet:devices message has dropped the cached device
        old = await client.get("/ingest/osmand", params=position(device, key=device.http_key))
        if old.status_code == 403:
            break
    assert old.json()["reason"] == Reason.INVALID_KEY
    fresh = await client.get("/ingest/osmand", params=position(device, key=new_key))
    assert fresh.status_code == 200, fresh.text


async def test_an_admin_can_waive_the_key_for_legacy_hardware(
    client, org_a, make_device, vehicle_service, stored_count
):
    import httpx

    device = make_device(org_a, protocol="osmand")
    url = f"/api/v1/devices/{device.device_id}"
    async with httpx.AsyncClient(base_url=vehicle_service.url) as http:
        refused = await http.patch(
            url, headers=org_a.headers("dispatcher"), json={"http_key_required": False}
        )
        assert refused.status_code == 403, refused.text
        waived = await http.patch(
            url, headers=org_a.headers("admin"), json={"http_key_required": False}
        )
        assert waived.status_code == 200, waived.text
        body = waived.json()
        assert body["http_key_required"] is False
        assert body["http_key_waived_by"] == org_a.user_ids["admin"]
        assert body["http_key_waived_at"] is not None
        assert (await http.get(url, headers=org_a.headers("viewer"))).json()[
            "http_key_required"
        ] is False
    for _ in range(50):
        response = await client.get("/ingest/osmand", params=position(device))
        if response.status_code == 200:
            break
    assert response.status_code == 200, response.text
    assert await stored_count(device.device_id) == 1
    async with httpx.AsyncClient(base_url=vehicle_service.url) as http:
        required = await http.patch(
            url, headers=org_a.headers("dispatcher"), json={"http_key_required": True}
        )
        assert required.status_code == 200, required.text
        assert required.json()["http_key_waived_at"] is None
    for _ in range(50):
        response = await client.get("/ingest/osmand", params=position(device))
        if response.status_code == 401:
            break
    assert response.json()["reason"] == Reason.MISSING_KEY


@pytest.fixture
def tight_limits(app, redis):
    """The running app's ingest limits, lowered for one test (an hour's window, so that a
    window boundary does not fall inside the test)."""
    from fleet_location.ingest.http_access import IngestRateLimiter

    original = app.state.ingest_limiter
    app.state.ingest_limiter = IngestRateLimiter(
        app.state.redis, per_address=10, per_device=3, window_s=3600
    )
    yield app.state.ingest_limiter
    app.state.ingest_limiter = original


async def test_a_device_past_its_rate_limit_is_refused_and_counted(
    client, db, org_a, make_device, tight_limits, stored_count, wait_for
):
    device = make_device(org_a, protocol="osmand")
    address = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    before = counted(Reason.RATE_LIMITED)
    statuses = []
    # One base time: at() is relative to now, and five calls can straddle a second, which
    # would give two positions the same (truncated) timestamp, stored once.
    base = int(at(200).timestamp())
    for seconds_ago in range(5):
        ts = base - seconds_ago
        response = await client.get(
            "/ingest/osmand",
            params=position(device, key=device.http_key, timestamp=ts),
            headers=address,
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429, 429]
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == Reason.RATE_LIMITED
    assert int(response.headers["retry-after"]) >= 1
    assert counted(Reason.RATE_LIMITED) == before + 2
    assert await stored_count(device.device_id) == 3
    assert await wait_for(lambda: kept_payloads(db, device, Reason.RATE_LIMITED))
    # Forged requests (no key) do not spend the device's budget: another device's are its own.
    other = make_device(org_a, protocol="osmand")
    for _ in range(3):
        forged = await client.get("/ingest/osmand", params=position(other), headers=address)
        assert forged.status_code == 401
    own = await client.get(
        "/ingest/osmand", params=position(other, key=other.http_key), headers=address
    )
    assert own.status_code == 200, own.text


async def test_an_address_past_its_rate_limit_is_refused_whatever_the_device(
    client, org_a, make_device, tight_limits
):
    address = {"X-Forwarded-For": f"203.0.113.{uuid.uuid4().int % 250 + 1}"}
    before = counted(Reason.RATE_LIMITED)
    statuses = []
    for _ in range(12):
        # A new made-up id each time: the address limit holds whatever the id says.
        response = await client.get(
            "/ingest/osmand",
            params={"id": f"imei-{uuid.uuid4().hex[:12]}", "lat": "1", "lon": "2"},
            headers=address,
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 2
    assert response.json()["reason"] == Reason.RATE_LIMITED
    assert counted(Reason.RATE_LIMITED) == before + 2
    device = make_device(org_a, protocol="osmand")
    blocked = await client.get(
        "/ingest/osmand", params=position(device, key=device.http_key), headers=address
    )
    assert blocked.status_code == 429
