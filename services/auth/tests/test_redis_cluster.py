"""Auth's Redis writes on a real three-node Redis Cluster (REDIS_CLUSTER=true): failed-login
counters (an account's and an address's, in different slots) and token revocations, as
every service reads them."""

import time
import uuid

import pytest

from fleet_auth.login_limits import LoginLimiter
from fleet_auth.revocation import Revoker
from fleet_common.auth import REVOCATIONS_CHANNEL, Principal, RevocationList, Role
from fleet_common.errors import TooManyRequestsError
from fleet_common.redis import create_redis

WINDOW_S = 60


@pytest.fixture
async def redis(redis_cluster):
    client = create_redis(redis_cluster.url, cluster=True)
    await client.initialize()  # as the services' start-up does (fleet_common.app)
    yield client
    await client.aclose()


async def test_failed_logins_are_counted_and_limited(redis):
    limiter = LoginLimiter(redis, per_account=3, per_address=100, window_s=WINDOW_S)
    email = f"{uuid.uuid4().hex}@example.com"
    for _ in range(3):
        await limiter.check(email, "198.51.100.7")
        await limiter.record_failure(email, "198.51.100.7")
    with pytest.raises(TooManyRequestsError) as refused:
        await limiter.check(email, "198.51.100.8")
    assert 0 < int(refused.value.headers["Retry-After"]) <= WINDOW_S
    await limiter.record_success(email)
    await limiter.check(email, "198.51.100.7")


async def test_a_revocation_is_recorded_and_announced(redis):
    user_id = uuid.uuid4()
    principal = Principal(
        user_id=user_id,
        org_id=uuid.uuid4(),
        role=Role.viewer,
        token_id=uuid.uuid4().hex,
        expires_at=int(time.time()) + 900,
        issued_at_ms=time.time_ns() // 1_000_000 - 1000,
    )
    revocations = RevocationList(redis, cache_ttl_s=0)
    assert not await revocations.is_revoked(principal)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(REVOCATIONS_CHANNEL)
        await pubsub.get_message(timeout=5.0)  # the subscription confirmation
        await Revoker(redis, access_token_ttl_s=900).revoke_user(user_id, "test")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
    assert message is not None
    assert str(user_id).encode() in message["data"]
    assert await revocations.is_revoked(principal)
