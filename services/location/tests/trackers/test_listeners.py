"""The tracker listeners end to end: real TCP connections to the location app, trackers
registered through the real vehicle service, positions read back from PostgreSQL and the
API. An answer (Teltonika's record count, GT06's response) arrives only after the commit, so
the rows are read right after it without polling."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from fleet_location.ingest.devices import MISSING
from fleet_location.trackers import gt06, teltonika
from fleet_location.trackers.errors import TrackerReason

from .conftest import rejected
from .frames import (
    GT06_HEARTBEAT,
    GT06_IMEI,
    GT06_LOCATION,
    GT06_LOGIN,
    GT06_STATUS,
    TELTONIKA_CODEC8,
    TELTONIKA_CODEC8E,
    TELTONIKA_HANDSHAKE,
    TELTONIKA_IMEI,
)


def port(app, protocol: str) -> int:
    return app.state.trackers.port(protocol)


async def rows(db, device_id: str):
    return await db.fetch(
        "SELECT recorded_at, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, "
        "speed_kph, heading_deg, altitude_m, battery_pct, ignition, odometer_km, attrs, org_id "
        "FROM telemetry WHERE device_id = $1 ORDER BY recorded_at",
        uuid.UUID(device_id),
    )


def attrs_of(row) -> dict:
    return orjson.loads(row["attrs"]) if row["attrs"] else {}


def records(count: int, start: datetime, lat: float = 10.77, lon: float = 106.7):
    return [
        teltonika.AvlRecord(
            recorded_at=start + timedelta(seconds=i),
            priority=0,
            lon=lon + i / 1e5,
            lat=lat,
            altitude_m=5,
            angle_deg=90,
            satellites=8,
            speed_kph=30,
            event_io=0,
            io={239: 1},
        )
        for i in range(count)
    ]


async def teltonika_session(connect, app, imei: str):
    client = await connect(port(app, "teltonika"))
    await client.send(teltonika.encode_imei(imei))
    assert await client.read(1) == teltonika.ACCEPT
    return client


async def test_teltonika_frames_are_stored_with_their_values_and_a_deleted_device_is_refused(
    tracker_app, tracker_db, org_a, make_tracker, delete_tracker, connect
):
    tracker = make_tracker(org_a, "teltonika", uid=TELTONIKA_IMEI)
    try:
        client = await connect(port(tracker_app, "teltonika"))
        await client.send(TELTONIKA_HANDSHAKE)
        assert await client.read(1) == b"\x01"
        bad_crc = rejected(TrackerReason.BAD_CRC)
        corrupted = bytearray(bytes.fromhex(TELTONIKA_CODEC8))
        corrupted[30] ^= 0x40
        await client.send(bytes(corrupted))
        assert await client.nothing_within(1.0), "a packet with a bad CRC was acknowledged"
        assert rejected(TrackerReason.BAD_CRC) == bad_crc + 1
        assert await rows(tracker_db, tracker.device_id) == []

        await client.send(TELTONIKA_CODEC8)
        assert await client.read(4) == bytes.fromhex("00000001")
        (row,) = await rows(tracker_db, tracker.device_id)
        assert row["recorded_at"] == datetime(2019, 1, 4, 12, 27, 19, tzinfo=UTC)
        assert round(row["lat"], 7) == 48.1523066
        assert round(row["lon"], 7) == 16.3745183
        assert (row["altitude_m"], row["heading_deg"], row["speed_kph"]) == (190, 198, 83)
        attrs = attrs_of(row)
        assert attrs["satellites"] == 15
        assert attrs["movement"] is True
        assert attrs["external_voltage_mv"] == 14233
        assert attrs["battery_voltage_mv"] == 3976
        assert str(row["org_id"]) == tracker.org_id

        await client.send(TELTONIKA_CODEC8E)
        assert await client.read(4) == bytes.fromhex("00000001")
        _first, row = await rows(tracker_db, tracker.device_id)
        assert row["recorded_at"] == datetime(2021, 4, 8, 10, 52, 26, tzinfo=UTC)
        assert round(row["lat"], 7) == 52.0296716
        assert round(row["lon"], 7) == 6.7877833
        assert row["speed_kph"] == 19
        assert row["ignition"] is True
        assert attrs_of(row)["external_voltage_mv"] == 14304
        assert attrs_of(row)["io_256"] == "WV1ZZZ2EZ86015388"

        # The device resends a packet whose answer it lost: answered, stored once.
        await client.send(TELTONIKA_CODEC8)
        assert await client.read(4) == bytes.fromhex("00000001")
        assert len(await rows(tracker_db, tracker.device_id)) == 2
    finally:
        delete_tracker(tracker)

    # Deleted: its connection goes at its next packet, a new handshake is refused.
    directory = tracker_app.state.devices
    for _ in range(200):  # the fleet:devices message drops the cached entry
        if directory.lookup(TELTONIKA_IMEI) is MISSING:
            break
        await asyncio.sleep(0.02)
    await client.send(TELTONIKA_CODEC8)
    assert await client.closed_by_server()
    again = await connect(port(tracker_app, "teltonika"))
    await again.send(TELTONIKA_HANDSHAKE)
    assert await again.read(1) == b"\x00"
    assert await again.closed_by_server()


async def test_teltonika_unknown_imei_is_refused(tracker_app, connect):
    unknown = rejected("unknown_device")
    client = await connect(port(tracker_app, "teltonika"))
    await client.send(teltonika.encode_imei("359633100000001"))
    assert await client.read(1) == b"\x00"
    assert await client.closed_by_server()
    assert rejected("unknown_device") == unknown + 1


async def test_a_tracker_on_the_wrong_protocol_listener_is_refused(
    tracker_app, org_a, make_tracker, connect
):
    tracker = make_tracker(org_a, "gt06")
    client = await connect(port(tracker_app, "teltonika"))
    await client.send(teltonika.encode_imei(tracker.uid))
    assert await client.read(1) == b"\x00"


async def test_teltonika_backlog_of_many_records_in_one_packet(
    tracker_app, tracker_db, org_a, make_tracker, connect
):
    tracker = make_tracker(org_a, "teltonika")
    client = await teltonika_session(connect, tracker_app, tracker.uid)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    backlog = records(255, start)
    # One record out of range is dead-lettered on its own; the rest are stored.
    backlog[100].lat = 95.0
    await client.send(teltonika.encode_avl(backlog))
    assert await client.read(4) == (255).to_bytes(4, "big")
    stored = await rows(tracker_db, tracker.device_id)
    assert len(stored) == 254
    assert stored[0]["recorded_at"] == start
    assert stored[0]["ignition"] is True
    kept = await tracker_db.fetchval(
        "SELECT count(*) FROM telemetry_rejections WHERE device_uid = $1 AND reason = $2",
        tracker.uid,
        "out_of_range",
    )
    assert kept == 1


async def test_teltonika_no_fix_records(tracker_app, tracker_db, org_a, make_tracker, connect):
    tracker = make_tracker(org_a, "teltonika")
    client = await teltonika_session(connect, tracker_app, tracker.uid)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    last_known, never_fixed = records(2, start)
    last_known.satellites = 0
    never_fixed.satellites, never_fixed.lat, never_fixed.lon = 0, 0.0, 0.0
    no_fix = rejected(TrackerReason.NO_FIX)
    await client.send(teltonika.encode_avl([last_known, never_fixed]))
    assert await client.read(4) == (2).to_bytes(4, "big")
    (row,) = await rows(tracker_db, tracker.device_id)
    assert attrs_of(row)["valid"] is False
    assert row["ignition"] is True
    assert rejected(TrackerReason.NO_FIX) == no_fix + 1


async def test_gt06_frames_are_stored_and_answered_with_their_serials(
    tracker_app, tracker_db, org_b, make_tracker, delete_tracker, connect
):
    tracker = make_tracker(org_b, "gt06", uid=GT06_IMEI)
    try:
        client = await connect(port(tracker_app, "gt06"))
        await client.send(GT06_LOGIN)
        assert await client.read(10) == gt06.encode_response(gt06.LOGIN, 0x0001)

        await client.send(GT06_LOCATION)  # location packets are not answered
        assert await client.nothing_within(0.5)
        await client.send(GT06_STATUS)
        received_at = datetime.now(UTC)
        assert await client.read(10) == gt06.encode_response(gt06.STATUS, 0x01BA)
        location, status = await rows(tracker_db, tracker.device_id)
        assert location["recorded_at"] == datetime(2015, 10, 20, 14, 21, 11, tzinfo=UTC)
        assert round(location["lat"], 5) == 54.94535
        assert round(location["lon"], 5) == 24.01762
        assert attrs_of(location)["satellites"] == 5
        assert "valid" not in attrs_of(location)
        # Status: at its arrival, at the last fix, not a fix itself.
        assert abs(status["recorded_at"] - received_at) < timedelta(seconds=5)
        assert (status["lat"], status["lon"]) == (location["lat"], location["lon"])
        assert status["battery_pct"] == 100
        assert status["ignition"] is False
        assert attrs_of(status)["charging"] is True
        assert attrs_of(status)["valid"] is False

        await client.send(GT06_HEARTBEAT)
        assert await client.read(10) == gt06.encode_response(gt06.HEARTBEAT, 0x0008)
        heartbeat = (await rows(tracker_db, tracker.device_id))[-1]
        assert attrs_of(heartbeat)["battery_voltage_mv"] == 2900

        bad_crc = rejected(TrackerReason.BAD_CRC)
        broken = bytearray(bytes.fromhex(GT06_HEARTBEAT))
        broken[5] ^= 0x10
        await client.send(bytes(broken))
        assert await client.nothing_within(1.0), "a packet with a bad CRC was answered"
        assert rejected(TrackerReason.BAD_CRC) == bad_crc + 1
    finally:
        delete_tracker(tracker)


@pytest.mark.parametrize(("code", "alarm"), [(0x01, "sos"), (0x02, "power_cut")])
async def test_gt06_alarm_becomes_attrs_alarm(
    tracker_app, tracker_db, org_b, make_tracker, connect, code, alarm
):
    tracker = make_tracker(org_b, "gt06")
    client = await connect(port(tracker_app, "gt06"))
    await client.send(gt06.encode_login(tracker.uid, 1))
    await client.read(10)
    moment = datetime.now(UTC).replace(microsecond=0)
    location = gt06.parse_packet(
        gt06.encode_location(
            recorded_at=moment,
            lat=-6.2,
            lon=106.8,
            speed_kph=40,
            course_deg=90,
            satellites=9,
            serial=2,
        )
    )
    content = location.content[:18] + bytes((9,)) + bytes(8) + bytes((0x06, 4, 3, code, 2))
    await client.send(gt06.encode(gt06.ALARM_2, content, 0x0102))
    assert await client.read(10) == gt06.encode_response(gt06.ALARM_2, 0x0102)
    (row,) = await rows(tracker_db, tracker.device_id)
    assert attrs_of(row)["alarm"] == alarm
    assert row["recorded_at"] == moment
    assert round(row["lat"], 5) == -6.2
    assert row["ignition"]


async def test_gt06_unknown_login_and_packets_before_login_are_refused(tracker_app, connect):
    client = await connect(port(tracker_app, "gt06"))
    await client.send(gt06.encode_login("359633100000002", 1))
    assert await client.closed_by_server()
    not_logged_in = rejected(TrackerReason.NOT_LOGGED_IN)
    client = await connect(port(tracker_app, "gt06"))
    await client.send(GT06_HEARTBEAT)
    assert await client.closed_by_server()
    assert rejected(TrackerReason.NOT_LOGGED_IN) == not_logged_in + 1


async def test_tenant_isolation(tracker_app, tracker_client, org_a, org_b, make_tracker, connect):
    ours = make_tracker(org_a, "teltonika")
    theirs = make_tracker(org_b, "teltonika")
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    for tracker, lat in ((ours, 10.0), (theirs, 20.0)):
        client = await teltonika_session(connect, tracker_app, tracker.uid)
        await client.send(teltonika.encode_avl(records(1, now, lat=lat)))
        assert await client.read(4) == (1).to_bytes(4, "big")

    async def latest(org) -> dict:
        response = await tracker_client.get("/api/v1/positions/latest", headers=org.headers())
        assert response.status_code == 200
        return {item["device_id"]: item for item in response.json()["items"]}

    for _ in range(100):  # Redis is updated just after the commit (and the answer)
        seen_a, seen_b = await latest(org_a), await latest(org_b)
        if ours.device_id in seen_a and theirs.device_id in seen_b:
            break
        await asyncio.sleep(0.05)
    assert ours.device_id in seen_a
    assert theirs.device_id not in seen_a
    assert theirs.device_id in seen_b
    assert ours.device_id not in seen_b
