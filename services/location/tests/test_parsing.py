"""Every payload form, mapped onto the same fields, and every validation reason."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fleet_location.ingest.parsing import (
    DeviceInfo,
    Limits,
    Reason,
    Rejected,
    build_position,
    parse_mqtt_telemetry,
    parse_osmand_params,
    parse_traccar_json,
)

DEVICE = DeviceInfo(uuid.uuid4(), "dev-1", uuid.uuid4(), uuid.uuid4())
LIMITS = Limits(timedelta(minutes=5), timedelta(days=30), 1000)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def fleet(payload) -> list:
    parsed = parse_mqtt_telemetry(
        json.dumps(payload).encode(), DEVICE, NOW, LIMITS, owntracks=False
    )
    assert not parsed.rejections, parsed.rejections
    return parsed.positions


def test_fleet_object_with_every_field():
    (p,) = fleet(
        {
            "ts": "2026-11-22T08:15:30.250Z",
            "lat": 10.7769,
            "lon": 106.7009,
            "speed": 42.5,
            "heading": 270,
            "alt": 12.0,
            "accuracy": 4.5,
            "battery": 87,
            "ignition": True,
            "odometer": 10234.7,
            "attrs": {"fuel": 63},
        }
    )
    assert p.recorded_at == datetime(2026, 11, 22, 8, 15, 30, 250000, tzinfo=UTC)
    assert (p.lat, p.lon, p.speed_kph, p.heading_deg) == (10.7769, 106.7009, 42.5, 270)
    assert (p.altitude_m, p.accuracy_m, p.battery_pct, p.ignition) == (12.0, 4.5, 87, True)
    assert p.odometer_km == 10234.7
    assert p.attrs == {"fuel": 63}
    assert (p.device_id, p.vehicle_id, p.org_id) == (
        DEVICE.device_id,
        DEVICE.vehicle_id,
        DEVICE.org_id,
    )


def test_fleet_array_unix_seconds_milliseconds_and_offsets():
    seconds = NOW.timestamp() - 60
    positions = fleet(
        [
            {"ts": seconds, "lat": 1, "lon": 2},
            {"ts": int(seconds * 1000) + 500, "lat": 1, "lon": 2},
            {"ts": "2026-11-22T10:00:00+02:00", "lat": 1, "lon": 2},
            {"ts": "2026-11-22T07:00:00", "lat": 1, "lon": 2},
            {"lat": 1, "lon": 2},
        ]
    )
    assert [p.recorded_at for p in positions] == [
        NOW - timedelta(seconds=60),
        NOW - timedelta(seconds=59.5),
        datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 7, 0, tzinfo=UTC),
        NOW,
    ]


def test_owntracks_location_and_other_types():
    payload = {
        "_type": "location",
        "lat": 48.85,
        "lon": 2.35,
        "tst": int(NOW.timestamp()),
        "vel": 30,
        "cog": 90,
        "alt": 35,
        "acc": 10,
        "batt": 55,
        "tid": "ab",
    }
    parsed = parse_mqtt_telemetry(json.dumps(payload).encode(), DEVICE, NOW, LIMITS, owntracks=True)
    (p,) = parsed.positions
    assert (p.lat, p.lon, p.speed_kph, p.heading_deg, p.altitude_m) == (48.85, 2.35, 30, 90, 35)
    assert (p.accuracy_m, p.battery_pct, p.recorded_at, p.attrs) == (10, 55, NOW, {"tid": "ab"})
    other = parse_mqtt_telemetry(
        b'{"_type": "transition", "event": "enter"}', DEVICE, NOW, LIMITS, owntracks=True
    )
    assert other.positions == []
    assert other.rejections == []


def test_osmand_query_knots_and_location_pair():
    fix = parse_osmand_params(
        {
            "id": "dev-1",
            "timestamp": str(int(NOW.timestamp())),
            "location": "10.5,106.25",
            "speed": "10",
            "bearing": "45.5",
            "altitude": "12",
            "accuracy": "3",
            "batt": "80",
            "hdop": "0.9",
            "charge": "true",
        }
    )
    p = build_position(DEVICE, NOW, LIMITS, **fix.fields)
    assert fix.uid == "dev-1"
    assert (p.lat, p.lon, p.heading_deg, p.battery_pct) == (10.5, 106.25, 45.5, 80)
    assert p.speed_kph == pytest.approx(18.52)
    assert p.attrs == {"hdop": "0.9", "charge": "true"}


@pytest.mark.parametrize(
    "timestamp",
    [
        str(int(NOW.timestamp())),
        str(int(NOW.timestamp() * 1000)),
        "2026-11-22T09:00:00Z",
        "2026-11-22 09:00:00",
    ],
)
def test_osmand_timestamp_forms(timestamp):
    fix = parse_osmand_params({"deviceid": "dev-1", "lat": "1", "lon": "2", "timestamp": timestamp})
    assert build_position(DEVICE, NOW, LIMITS, **fix.fields).recorded_at == NOW


def test_traccar_client_json_body():
    body = {
        "device_id": "dev-1",
        "location": {
            "timestamp": "2026-11-22T08:59:00.000Z",
            "coords": {
                "latitude": 10.1,
                "longitude": 106.2,
                "accuracy": 5,
                "speed": 10,
                "heading": -1,
                "altitude": 20,
            },
            "is_moving": True,
            "odometer": 12500,
            "event": "motionchange",
            "battery": {"level": 0.42, "is_charging": False},
            "activity": {"type": "in_vehicle"},
        },
    }
    (fix,) = parse_traccar_json(json.dumps(body).encode(), LIMITS)
    p = build_position(DEVICE, NOW, LIMITS, **fix.fields)
    assert fix.uid == "dev-1"
    assert p.speed_kph == pytest.approx(36.0)  # m/s in this variant
    assert p.heading_deg is None  # -1 means unknown
    assert p.battery_pct == pytest.approx(42.0)
    assert p.odometer_km == pytest.approx(12.5)
    assert p.attrs == {
        "is_moving": True,
        "event": "motionchange",
        "charging": False,
        "activity": "in_vehicle",
    }


def test_traccar_client_json_batch():
    body = {
        "device_id": "dev-1",
        "location": [
            {"timestamp": "2026-11-22T08:58:00Z", "coords": {"latitude": 1, "longitude": 2}},
            {"timestamp": "2026-11-22T08:59:00Z", "coords": {"latitude": 1.1, "longitude": 2}},
        ],
    }
    assert len(parse_traccar_json(json.dumps(body).encode(), LIMITS)) == 2


def reason_of(payload: bytes) -> str:
    try:
        parsed = parse_mqtt_telemetry(payload, DEVICE, NOW, LIMITS, owntracks=False)
    except Rejected as exc:
        return exc.reason
    (rejection,) = parsed.rejections
    return rejection[0].reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", Reason.INVALID_JSON),
        (b'{"lat": NaN, "lon": 1}', Reason.INVALID_JSON),
        (b"\xff\xfe", Reason.INVALID_JSON),
        (b"[]", Reason.INVALID_PAYLOAD),
        (b'"hello"', Reason.INVALID_PAYLOAD),
        (b'{"lat": "north", "lon": 1}', Reason.INVALID_PAYLOAD),
        (b'{"lat": true, "lon": 1}', Reason.INVALID_PAYLOAD),
        (b'{"lat": 1, "lon": 1, "attrs": [1]}', Reason.INVALID_PAYLOAD),
        (b'{"lat": 1, "lon": 1, "attrs": {"a": "\\u0000"}}', Reason.INVALID_PAYLOAD),
        (b'{"lat": 1, "lon": 1, "ts": "yesterday"}', Reason.INVALID_PAYLOAD),
        (b'{"lon": 1}', Reason.MISSING_FIELD),
        (b'{"lat": 1}', Reason.MISSING_FIELD),
        (b'{"lat": 91, "lon": 1}', Reason.OUT_OF_RANGE),
        (b'{"lat": 1, "lon": -180.5}', Reason.OUT_OF_RANGE),
        (b'{"lat": 1, "lon": 1, "speed": -3}', Reason.OUT_OF_RANGE),
        (b'{"lat": 1, "lon": 1, "heading": 361}', Reason.OUT_OF_RANGE),
        (b'{"lat": 1, "lon": 1, "battery": 101}', Reason.OUT_OF_RANGE),
        (b'{"lat": 1e400, "lon": 1}', Reason.INVALID_JSON),
        (b'{"lat": "nan", "lon": 1}', Reason.NON_FINITE),
        (b'{"lat": 1, "lon": 1, "ts": 9999999999999}', Reason.FUTURE_TIMESTAMP),
        (b'{"lat": 1, "lon": 1, "ts": "2026-11-22T09:10:00Z"}', Reason.FUTURE_TIMESTAMP),
        (b'{"lat": 1, "lon": 1, "ts": 0}', Reason.STALE_TIMESTAMP),
        (b'{"lat": 1, "lon": 1, "attrs": {"x": "' + b"a" * 5000 + b'"}}', Reason.TOO_LARGE),
        (json.dumps([{"lat": 1, "lon": 1}] * 1001).encode(), Reason.TOO_LARGE),
    ],
)
def test_rejection_reasons(payload, reason):
    assert reason_of(payload) == reason


def test_one_bad_element_does_not_lose_the_backlog():
    payload = json.dumps(
        [
            {"lat": 1, "lon": 1, "ts": 1795338000},
            {"lat": 100, "lon": 1},
            {"lat": 2, "lon": 2, "ts": 1795338001},
        ]
    ).encode()
    parsed = parse_mqtt_telemetry(payload, DEVICE, NOW, LIMITS, owntracks=False)
    assert len(parsed.positions) == 2
    ((rejected, raw),) = parsed.rejections
    assert rejected.reason == Reason.OUT_OF_RANGE
    assert json.loads(raw) == {"lat": 100, "lon": 1}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"lat": "1", "lon": "2"}, Reason.MISSING_FIELD),
        ({"id": "x" * 200, "lat": "1", "lon": "2"}, Reason.INVALID_PAYLOAD),
        ({"id": "d", "lat": "1", "lon": "2", "speed": "inf"}, Reason.NON_FINITE),
        ({"id": "d", "lat": "1", "lon": "2", "speed": "-1"}, Reason.OUT_OF_RANGE),
        ({"id": "d", **{f"k{i}": "v" for i in range(40)}}, Reason.TOO_LARGE),
    ],
)
def test_osmand_rejections(params, reason):
    with pytest.raises(Rejected) as caught:
        parse_osmand_params(params)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"device_id": "d"}',
        b'{"device_id": "d", "location": {"coords": 3}}',
        b'{"device_id": 7, "location": {}}',
    ],
)
def test_traccar_json_rejections(body):
    with pytest.raises(Rejected):
        parse_traccar_json(body, LIMITS)
