"""The vehicle service's Redis paths on a single Redis and on a real three-node Redis Cluster
(REDIS_CLUSTER=true), through its API: device changes announced on `fleet:devices`, last-seen
times from the org's latest positions, maintenance meters from location's detection state,
tracker commands queued (list, expiry and channel in one transaction) and their outcomes read
from the results stream in the consumer group, which puts `command_result` on `fleet:events`.
"""

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime

import pytest

from fleet_common.redis import (
    DEVICES_CHANNEL,
    EVENTS_STREAM,
    METERS_FIELD,
    create_redis,
    detection_state_key,
    latest_key,
)
from fleet_common.tracker_commands import COMMANDS_CHANNEL, RESULTS_STREAM, queue_key

from .conftest import running_app, vehicle_settings

TIMEOUT_S = 10.0


@pytest.fixture(scope="module", params=["single", "cluster"])
def redis_url(request, stack) -> tuple[str, bool]:
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, True
    return stack.redis.url, False


@pytest.fixture(scope="module")
async def service(redis_url, stack, vehicle_database, auth_service):
    """The vehicle app on that Redis, and a client of the same kind for the test's side."""
    url, cluster = redis_url
    settings = vehicle_settings(
        url, stack.mosquitto, vehicle_database, auth_service, redis_cluster=cluster
    )
    redis = create_redis(url, cluster=cluster)
    if cluster:
        await redis.initialize()
    async with running_app(settings) as (app, client):
        yield app, client, redis
    await redis.aclose()


async def next_message(pubsub, timeout_s: float = TIMEOUT_S):
    async with asyncio.timeout(timeout_s):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
            if message is not None:
                return message


async def test_device_changes_last_seen_and_meters(service, org_a):
    _app, client, redis = service
    headers = org_a.headers("dispatcher")
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(DEVICES_CHANNEL)
        await pubsub.get_message(timeout=5.0)  # the subscription's confirmation
        vehicle = await client.post(
            "/api/v1/vehicles",
            json={"name": "Van", "plate": f"RC-{uuid.uuid4().hex[:8]}", "odometer_km": 10},
            headers=headers,
        )
        assert vehicle.status_code == 201, vehicle.text
        vehicle = vehicle.json()
        created = await client.post(
            "/api/v1/devices",
            json={"uid": f"rc-{uuid.uuid4().hex[:8]}", "name": "GPS", "vehicle_id": vehicle["id"]},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        device = created.json()
        announced = json.loads((await next_message(pubsub))["data"])
        assert announced == {"action": "upsert", "uid": device["uid"], "device_id": device["id"]}

    # The location service's latest position of the device: its last-seen time.
    seen_at = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    await redis.hset(
        latest_key(org_a.org_id), device["id"], json.dumps({"recorded_at": seen_at.isoformat()})
    )
    listed = await client.get("/api/v1/devices", headers=headers)
    (found,) = [d for d in listed.json()["items"] if d["id"] == device["id"]]
    assert datetime.fromisoformat(found["last_seen_at"]) == seen_at

    # The meters the location service counted: in the slot of its detection state.
    schedule = await client.post(
        f"/api/v1/vehicles/{vehicle['id']}/maintenance",
        json={"name": "Oil change", "meter": "odometer_km", "interval": 5000},
        headers=headers,
    )
    assert schedule.status_code == 201, schedule.text
    meters = {"vehicle_id": vehicle["id"], "odometer_km": 4321.5, "engine_hours": 3.5}
    await redis.hset(detection_state_key(device["id"]), METERS_FIELD, json.dumps(meters))
    listed = await client.get(f"/api/v1/vehicles/{vehicle['id']}/maintenance", headers=headers)
    assert [s["current_reading"] for s in listed.json()["items"]] == [4321.5]


async def test_tracker_commands_and_their_results(service, org_a):
    _app, client, redis = service
    headers = org_a.headers("dispatcher")
    imei = "35" + "".join(random.choice("0123456789") for _ in range(13))
    created = await client.post(
        "/api/v1/devices",
        json={"uid": imei, "name": "Tracker", "protocol": "teltonika"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    device = created.json()
    stream_end = (await redis.xrevrange(EVENTS_STREAM, count=1) or [(b"0-0", {})])[0][0]

    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(COMMANDS_CHANNEL)
        await pubsub.get_message(timeout=5.0)
        sent = await client.post(
            f"/api/v1/devices/{device['id']}/commands",
            json={"type": "request_position", "expires_in_s": 600},
            headers=headers,
        )
        assert sent.status_code == 202, sent.text
        command = sent.json()
        # What a location process is told: the uid, and the command on the device's list.
        assert (await next_message(pubsub))["data"].decode() == imei
    [queued] = await redis.lrange(queue_key(imei), 0, -1)
    assert json.loads(queued)["id"] == command["id"]
    assert 0 < await redis.ttl(queue_key(imei)) <= 600

    # The location process's outcome, through the results stream's consumer group.
    await redis.xadd(
        RESULTS_STREAM,
        {
            "id": command["id"],
            "uid": imei,
            "device_id": device["id"],
            "org_id": org_a.org_id,
            "status": "acknowledged",
            "message": "GPS:1 Sat:9",
        },
    )
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            listed = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=headers)
            (got,) = [c for c in listed.json()["items"] if c["id"] == command["id"]]
            if got["status"] == "acknowledged":
                break
            await asyncio.sleep(0.1)

    async with asyncio.timeout(TIMEOUT_S):
        while True:
            events = [
                json.loads(fields[b"event"])
                for _id, fields in await redis.xrange(EVENTS_STREAM, min=f"({stream_end.decode()}")
            ]
            results = [e for e in events if e["device_id"] == device["id"]]
            if results:
                break
            await asyncio.sleep(0.1)
    assert [(e["type"], e["details"]["command_id"]) for e in results] == [
        ("command_result", command["id"])
    ]
