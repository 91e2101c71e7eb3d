"""The gateway's Redis on a real three-node Redis Cluster (REDIS_CLUSTER=true): the live feed
(one subscription per org, channels of any slot) and the rate limiter's shared counts."""

import asyncio
import uuid

import pytest

from fleet_common.redis import create_redis, live_channel
from fleet_gateway.config import RateLimit
from fleet_gateway.live import LiveHub, Subscriber
from fleet_gateway.rate_limit import RateLimiter


@pytest.fixture
async def redis(redis_cluster):
    client = create_redis(redis_cluster.url, cluster=True)
    await client.initialize()  # as the services' start-up does (fleet_common.app)
    yield client
    await client.aclose()


async def test_each_org_gets_its_own_live_messages(redis):
    hub = LiveHub(redis)
    # Enough orgs that their channels hash to every node's slots.
    sockets = {uuid.uuid4(): Subscriber(16) for _ in range(6)}
    try:
        for org_id, socket in sockets.items():
            await hub.join(org_id, socket)
        for org_id in sockets:
            await redis.publish(live_channel(org_id), f'{{"type":"alert","org":"{org_id}"}}')
        for org_id, socket in sockets.items():
            message = await asyncio.wait_for(socket.queue.get(), 5.0)
            assert message == f'{{"type":"alert","org":"{org_id}"}}'
            assert socket.queue.empty()
    finally:
        await hub.close()


async def test_replicas_share_one_count(redis):
    replica_a, replica_b = RateLimiter(redis), RateLimiter(redis)
    limit = RateLimit(requests=10, window_s=3600)
    subjects = [f"user:{uuid.uuid4()}" for _ in range(4)]
    try:
        for subject in subjects:
            assert [await replica_a.hit("api", subject, limit) for _ in range(6)] == [None] * 6
        await replica_a.flush()  # one pipeline, keys on several nodes
        for subject in subjects:
            verdicts = [await replica_b.hit("api", subject, limit) for _ in range(6)]
            assert verdicts[:4] == [None] * 4
            assert all(v is not None and 1 <= v <= 3600 for v in verdicts[4:])
    finally:
        await replica_a.close()
        await replica_b.close()
