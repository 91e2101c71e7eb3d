"""Redis client construction and the key names every service agrees on (ARCHITECTURE.md)."""

from uuid import UUID

from redis.asyncio import Redis

EVENTS_STREAM = "fleet:events"
EVENTS_GROUP = "notification"
DEVICES_CHANNEL = "fleet:devices"


def latest_key(org_id: UUID | str) -> str:
    return f"fleet:latest:{org_id}"


def geo_key(org_id: UUID | str) -> str:
    return f"fleet:geo:{org_id}"


def live_channel(org_id: UUID | str) -> str:
    return f"fleet:live:{org_id}"


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
