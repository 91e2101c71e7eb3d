"""The ingest, live feed and event paths on a single Redis and on a real three-node Redis
Cluster (REDIS_CLUSTER=true): the same code, keys whose hash tags keep each script's keys in
one slot, a scan of every node for the offline sweep, pub/sub across nodes."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from fleet_common.db import create_engine, create_sessionmaker
from fleet_common.redis import EVENTS_STREAM, create_redis, geo_key, latest_key, live_channel
from fleet_location.config import Settings
from fleet_location.events import create_event_detector
from fleet_location.ingest.live import LiveUpdater, position_document
from fleet_location.positions.model import Position

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SPEED_LIMIT_KPH = 50.0


@pytest.fixture(scope="module", params=["single", "cluster"])
async def redis(request, stack):
    if request.param == "cluster":
        client = create_redis(request.getfixturevalue("redis_cluster").url, cluster=True)
        await client.initialize()  # as the services' start-up does (fleet_common.app)
    else:
        client = create_redis(stack.redis.url)
    yield client
    await client.aclose()


def drive(org_id: uuid.UUID, device_id: uuid.UUID, speeds_kph: list[float]) -> list[Position]:
    return [
        Position(
            device_id,
            uuid.uuid4(),
            org_id,
            T0 + timedelta(seconds=10 * i),
            10.0 + i * 0.001,
            106.0,
            speed_kph=speed,
        )
        for i, speed in enumerate(speeds_kph)
    ]


async def test_latest_positions_geo_set_and_live_feed(redis) -> None:
    # Enough orgs that their keys land on every node of the cluster.
    orgs = [uuid.uuid4() for _ in range(6)]
    positions = [p for org in orgs for p in drive(org, uuid.uuid4(), [10.0, 20.0])]
    updater = LiveUpdater(redis)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(*(live_channel(org) for org in orgs))
        for _ in orgs:
            await pubsub.get_message(timeout=5.0)  # the subscription confirmations
        assert await updater.publish(positions) == len(positions)
        received = []
        while len(received) < len(positions):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert message is not None, f"only {len(received)} live messages arrived"
            received.append((message["channel"].decode(), orjson.loads(message["data"])))
    assert sorted(received, key=lambda r: (r[0], r[1]["data"]["recorded_at"])) == sorted(
        (
            (
                live_channel(p.org_id),
                {"type": "position", "data": json.loads(orjson.dumps(position_document(p)))},
            )
            for p in positions
        ),
        key=lambda r: (r[0], r[1]["data"]["recorded_at"]),
    )
    for org in orgs:
        newest = positions[2 * orgs.index(org) + 1]
        stored = await redis.hget(latest_key(org), str(newest.device_id))
        assert stored == orjson.dumps(position_document(newest))
        [(lon, lat)] = await redis.geopos(geo_key(org), str(newest.device_id))
        assert (round(lon, 4), round(lat, 4)) == (newest.lon, newest.lat)
    # A late, older position changes nothing.
    assert await updater.publish([positions[0]]) == 0


@pytest.fixture(scope="module")
async def detector_for(location_database, stack):
    engine = create_engine(location_database)
    settings = Settings(
        database_url=location_database,
        redis_url=stack.redis.url,
        offline_after_s=600,
        overspeed_min_duration_s=10,
        low_battery_pct=20,
    )

    def factory(redis, speed_limits: dict):
        return create_event_detector(settings, redis, create_sessionmaker(engine), speed_limits.get)

    yield factory
    await engine.dispose()


async def test_events_are_written_with_their_state_and_read_by_a_consumer_group(
    redis, detector_for
) -> None:
    orgs = [uuid.uuid4() for _ in range(4)]
    devices = {uuid.uuid4(): org for org in orgs for _ in range(3)}
    detector = detector_for(redis, dict.fromkeys(devices, SPEED_LIMIT_KPH))
    group = f"test-{uuid.uuid4().hex[:8]}"
    await redis.xgroup_create(EVENTS_STREAM, group, id="$", mkstream=True)
    try:
        positions = [
            p for device, org in devices.items() for p in drive(org, device, [30, 80, 85, 90])
        ]
        await detector.positions_committed(positions)
        # The same batch again (a redelivery) fires nothing twice.
        await detector.positions_committed(positions)
        # The offline sweep finds every org's latest positions, on whichever node they are.
        await LiveUpdater(redis).publish(positions)
        await detector.sweep_offline(now=T0.timestamp() + 3600)

        events = []
        while True:
            answer = await redis.xreadgroup(group, "reader", {EVENTS_STREAM: ">"}, count=100)
            if not answer:
                break
            [(_stream, entries)] = answer
            await redis.xack(EVENTS_STREAM, group, *(entry_id for entry_id, _ in entries))
            events += [json.loads(fields[b"event"]) for _, fields in entries]
        by_device: dict[str, list] = {str(device): [] for device in devices}
        for e in events:
            if e["device_id"] in by_device:
                by_device[e["device_id"]].append((e["type"], e["details"].get("phase")))
        # Each device once each: a trip and an overspeed begin; the sweep takes it offline and
        # closes the overspeed (the trip ends later, after its stop).
        assert {device: sorted(found) for device, found in by_device.items()} == dict.fromkeys(
            by_device,
            sorted(
                [
                    ("trip_start", None),
                    ("overspeed", "started"),
                    ("device_offline", None),
                    ("overspeed", "ended"),
                ]
            ),
        )
        pending = await redis.xpending(EVENTS_STREAM, group)
        assert pending["pending"] == 0
    finally:
        await redis.xgroup_destroy(EVENTS_STREAM, group)
