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


def detection_state_key(device_id: UUID | str) -> str:
    """The location service's detection state of a device: a hash whose `METERS_FIELD` holds
    the device's meters (`{"vehicle_id", "odometer_km", "engine_hours"}`, JSON) for the
    vehicle service's maintenance; the other fields are the detector's own."""
    return f"fleet:detect:{device_id}"


METERS_FIELD = "m"


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
