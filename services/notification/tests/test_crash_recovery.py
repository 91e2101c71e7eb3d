"""A notification process SIGKILLed mid-stream: after a restart no alert is lost or doubled."""

import json
import signal

import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select, text

from fleet_common.db import create_engine
from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM
from fleet_notification.models import Alert, Delivery

from .conftest import eventually, make_event

EVENTS = 600


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    make_notification_env, run_service, make_org
):
    env = make_notification_env(4)
    org = make_org()
    first = run_service("notification", {**env, "NOTIFICATION_CONSUMER_NAME": "victim"})
    async with httpx.AsyncClient(base_url=first.url, headers=org.headers()) as client:
        rule = await client.post(
            "/api/v1/alert-rules",
            json={
                "name": "all",
                "event_types": ["overspeed"],
                "channels": ["in_app"],
                "cooldown_s": 0,
            },
        )
        assert rule.status_code == 201, rule.text
    redis = Redis.from_url(env["REDIS_URL"])
    engine = create_engine(env["NOTIFICATION_DATABASE_URL"])

    async def alerts() -> int:
        async with engine.connect() as conn:
            return await conn.scalar(select(func.count()).select_from(Alert.__table__))

    try:
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(EVENTS):
                pipe.xadd(EVENTS_STREAM, {"event": json.dumps(make_event(org.org_id))})
            await pipe.execute()
        await eventually(lambda: _at_least(alerts, 100), timeout_s=30, interval_s=0.01)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        killed_at = await alerts()
        assert killed_at < EVENTS, "the kill came too late to test anything"
        pending = await redis.xpending(EVENTS_STREAM, EVENTS_GROUP)
        print(f"killed after {killed_at} alerts; {pending['pending']} entries pending")

        run_service("notification", {**env, "NOTIFICATION_CONSUMER_NAME": "successor"})
        await eventually(lambda: _at_least(alerts, EVENTS), timeout_s=60, interval_s=0.1)
        async with engine.connect() as conn:
            distinct_events = await conn.scalar(select(func.count(func.distinct(Alert.event_id))))
            deliveries = await conn.scalar(select(func.count()).select_from(Delivery.__table__))
            duplicates = await conn.scalar(
                text(
                    "SELECT count(*) FROM (SELECT event_id FROM alerts GROUP BY event_id "
                    "HAVING count(*) > 1) d"
                )
            )
        assert await alerts() == EVENTS
        assert distinct_events == EVENTS
        assert duplicates == 0
        assert deliveries == EVENTS
        await eventually(lambda: _no_pending(redis), timeout_s=15, interval_s=0.1)
    finally:
        await redis.aclose()
        await engine.dispose()


async def _at_least(count, n: int) -> bool:
    return await count() >= n


async def _no_pending(redis: Redis) -> bool:
    return (await redis.xpending(EVENTS_STREAM, EVENTS_GROUP))["pending"] == 0
