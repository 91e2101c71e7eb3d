"""The latest-position documents: the timestamp format (fixed width, UTC, so string order is
time order) and the JSON the updater writes to Redis."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson

from fleet_common.redis import geo_key, latest_key, live_channel
from fleet_location.ingest.live import LiveUpdater, iso_utc, position_document
from fleet_location.positions.model import Position


def test_every_timestamp_has_six_fraction_digits_and_a_z() -> None:
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.120000Z"
    )
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == "2026-01-02T03:04:05.000007Z"


def test_other_offsets_are_converted_to_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2026-01-02T01:04:05.000007Z"


def test_string_order_is_time_order() -> None:
    start = datetime(2026, 1, 2, 23, 59, 59, tzinfo=UTC)
    moments = [start + timedelta(microseconds=step) for step in (0, 1, 999_999, 1_000_000)]
    stamps = [iso_utc(m) for m in moments]
    assert stamps == sorted(stamps)
    assert len({len(s) for s in stamps}) == 1


async def test_latest_and_live_documents_are_the_position_document(redis) -> None:
    """The updater builds documents from a cached per-device head; what lands in Redis must
    be exactly `position_document` (None fields, attrs, a device that changed vehicle, a
    latitude outside the geo index)."""
    org_id, device_id = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    positions = [
        Position(device_id, uuid.uuid4(), org_id, start, 10.5, 106.25),
        Position(
            device_id,
            None,
            org_id,
            start + timedelta(seconds=1, microseconds=7),
            -89.9,
            -179.5,
            speed_kph=12.5,
            heading_deg=0.0,
            altitude_m=-3.0,
            accuracy_m=4.0,
            battery_pct=55.0,
            ignition=False,
            odometer_km=1e6,
            attrs={"driver": 'ß "quoted"', "n": [1, 2]},
        ),
    ]
    updater = LiveUpdater(redis)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(live_channel(org_id))
        await pubsub.get_message(timeout=1.0)  # the subscription confirmation
        for p in positions:
            assert await updater.publish([p]) == 1
            stored = await redis.hget(latest_key(org_id), str(device_id))
            assert stored == orjson.dumps(position_document(p))
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert orjson.loads(message["data"]) == {
                "type": "position",
                "data": orjson.loads(orjson.dumps(position_document(p))),
            }
    # Outside Redis' geo range the device leaves the geo set instead of a wrong point.
    assert await redis.geopos(geo_key(org_id), str(device_id)) == [None]


async def test_a_batch_keeps_the_newest_per_device_and_publishes_only_newer(redis) -> None:
    org_id = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def at(device: uuid.UUID, seconds: int, lat: float) -> Position:
        return Position(device, None, org_id, t0 + timedelta(seconds=seconds), lat, 1.0)

    updater = LiveUpdater(redis)
    # Any order in, several per device, one per device older than what is stored after.
    assert await updater.publish([at(a, 2, 2.0), at(b, 1, 1.5), at(a, 1, 1.0), at(a, 3, 3.0)]) == 4
    assert await updater.publish([at(a, 0, 9.0), at(b, 5, 5.5), at(b, 4, 4.5)]) == 2
    latest = {
        uuid.UUID(k.decode()): orjson.loads(v)
        for k, v in (await redis.hgetall(latest_key(org_id))).items()
    }
    assert latest[a]["lat"] == 3.0
    assert latest[b]["lat"] == 5.5
