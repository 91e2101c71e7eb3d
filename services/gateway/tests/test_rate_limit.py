"""Rate limits in Redis per user and route group; fail-open when Redis is down."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis

from fleet_devstack.servers import free_port
from fleet_gateway.config import RateLimit, Settings
from fleet_gateway.main import create_app
from fleet_gateway.rate_limit import RateLimiter

from .conftest import is_problem


@asynccontextmanager
async def gateway_app(auth_service, upstreams, **overrides) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        jwks_url=auth_service.jwks_url,
        auth_url=auth_service.url,
        vehicle_url=upstreams["vehicle"].url,
        location_url=upstreams["location"].url,
        notification_url=upstreams["location"].url,
        **overrides,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


async def test_429_with_retry_after_per_user_and_group(stack, auth_service, upstreams, make_org):
    org = make_org()
    limits = {"api": RateLimit(requests=3, window_s=60), "auth": RateLimit(requests=2, window_s=60)}
    async with gateway_app(
        auth_service,
        upstreams,
        redis_url=stack.redis.url,
        rate_limits=limits,
        trusted_proxies=["127.0.0.1/32"],
    ) as client:
        viewer = org.headers("viewer")
        statuses = [
            (await client.get("/api/v1/vehicles", headers=viewer)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        limited = await client.get("/api/v1/vehicles", headers=viewer)
        assert is_problem(limited, 429)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Another user has their own budget.
        assert (
            await client.get("/api/v1/vehicles", headers=org.headers("admin"))
        ).status_code == 200
        # Anonymous auth calls are limited per address (here a fresh one, vouched for by a
        # trusted proxy: other tests share 127.0.0.1), in their own group.
        body = {"refresh_token": "nope"}
        address = {"X-Forwarded-For": f"192.0.2.{uuid.uuid4().int % 250 + 1}"}
        first = [
            (await client.post("/api/v1/auth/refresh", json=body, headers=address)).status_code
            for _ in range(2)
        ]
        assert first == [401, 401]
        limited = await client.post("/api/v1/auth/refresh", json=body, headers=address)
        assert is_problem(limited, 429)


async def test_redis_down_fails_open_and_readiness_is_degraded(auth_service, upstreams, make_org):
    org = make_org()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    limits = {"api": RateLimit(requests=1, window_s=60)}
    async with gateway_app(
        auth_service, upstreams, redis_url=dead_redis, rate_limits=limits
    ) as client:
        for _ in range(3):
            response = await client.get("/api/v1/vehicles", headers=org.headers("viewer"))
            assert response.status_code == 200
        readiness = await client.get("/health/readiness")
        assert readiness.status_code == 200
        assert readiness.json()["status"] == "degraded"
        assert readiness.json()["checks"]["redis"].startswith("down")


async def test_untrusted_forwarded_for_is_replaced(auth_service, upstreams, stack, make_org):
    org = make_org()
    async with gateway_app(auth_service, upstreams, redis_url=stack.redis.url) as client:
        response = await client.get(
            "/api/v1/vehicles", headers={**org.headers("viewer"), "X-Forwarded-For": "6.6.6.6"}
        )
        assert response.json()["headers"]["x-forwarded-for"] == "127.0.0.1"
    async with gateway_app(
        auth_service, upstreams, redis_url=stack.redis.url, trusted_proxies=["127.0.0.1/32"]
    ) as client:
        response = await client.get(
            "/api/v1/vehicles", headers={**org.headers("viewer"), "X-Forwarded-For": "6.6.6.6"}
        )
        assert response.json()["headers"]["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"


async def _counted(redis: Redis, subject: str) -> int:
    keys = [key async for key in redis.scan_iter(match=f"fleet:ratelimit:api:{subject}:*")]
    return sum([int(await redis.get(key) or 0) for key in keys])


async def test_replicas_share_one_count_within_the_documented_tolerance(stack):
    redis = Redis.from_url(stack.redis.url)
    replica_a, replica_b = RateLimiter(redis), RateLimiter(redis)
    limit = RateLimit(requests=10, window_s=3600)
    subject = f"user:{uuid.uuid4()}"
    try:
        # A admits 6: the first counted in Redis at once, the others written behind.
        assert [await replica_a.hit("api", subject, limit) for _ in range(6)] == [None] * 6
        await replica_a.flush()
        assert await _counted(redis, subject) == 6
        # B learns of them on its first request and admits only the remaining 4.
        verdicts = [await replica_b.hit("api", subject, limit) for _ in range(6)]
        assert verdicts[:4] == [None] * 4
        assert all(v is not None and 1 <= v <= 3600 for v in verdicts[4:])
        await replica_b.flush()
        assert await _counted(redis, subject) == 10
        # A has not heard of B's hits until its next flush: the tolerance, one request here.
        assert await replica_a.hit("api", subject, limit) is None
        await replica_a.flush()
        assert await replica_a.hit("api", subject, limit) is not None
    finally:
        await replica_a.close()
        await replica_b.close()
        await redis.aclose()


async def test_hits_reach_redis_within_the_flush_interval_and_on_close(stack):
    redis = Redis.from_url(stack.redis.url)
    limiter = RateLimiter(redis, flush_interval_s=0.05)
    limit = RateLimit(requests=100, window_s=3600)
    subject = f"user:{uuid.uuid4()}"
    try:
        for _ in range(5):
            assert await limiter.hit("api", subject, limit) is None
        async with asyncio.timeout(5):
            while await _counted(redis, subject) != 5:  # noqa: ASYNC110 - Redis has no event
                await asyncio.sleep(0.02)
        closing = RateLimiter(redis, flush_interval_s=3600)
        for _ in range(3):
            assert await closing.hit("api", subject, limit) is None
        assert await _counted(redis, subject) == 6  # only the first is counted at once
        await closing.close()
        assert await _counted(redis, subject) == 8
        keys = [key async for key in redis.scan_iter(match=f"fleet:ratelimit:api:{subject}:*")]
        assert keys
        assert all(0 < ttl <= 3600 for ttl in [await redis.ttl(key) for key in keys])
    finally:
        await limiter.close()
        await redis.aclose()
