"""The event path's end on a real three-node Redis Cluster (REDIS_CLUSTER=true): entries of
`fleet:events` read by the consumer group, turned into alerts, acknowledged, and published
to the org's live channel."""

import json

import pytest

from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM, live_channel

from .conftest import eventually, make_event, publish, running_notification


@pytest.fixture(scope="module")
async def on_cluster(make_notification_env, redis_cluster):
    env = {
        **make_notification_env(0),
        "REDIS_URL": redis_cluster.url,
        "REDIS_CLUSTER": "true",
    }
    async with running_notification(env) as running:
        yield running


async def test_an_event_becomes_an_alert_on_the_live_channel(on_cluster, make_org):
    client, _app, redis = on_cluster
    org = make_org()
    rule = await client.post(
        "/api/v1/alert-rules",
        headers=org.headers(),
        json={"name": "Rule", "event_types": ["overspeed"], "channels": ["in_app"]},
    )
    assert rule.status_code == 201, rule.text
    await redis.initialize()
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(live_channel(org.org_id))
        await pubsub.get_message(timeout=5.0)  # the subscription confirmation
        event = make_event(org.org_id)
        await publish(redis, event)
        message = await eventually(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        )
    pushed = json.loads(message["data"])
    assert (pushed["type"], pushed["data"]["event_id"]) == ("alert", event["id"])
    listed = (await client.get("/api/v1/alerts", headers=org.headers())).json()
    assert [a["event_id"] for a in listed["items"]] == [event["id"]]
    # Acknowledged in the group once handled: nothing left pending.
    await eventually(lambda: _nothing_pending(redis), timeout_s=10.0)


async def _nothing_pending(redis) -> bool:
    return (await redis.xpending(EVENTS_STREAM, EVENTS_GROUP))["pending"] == 0
