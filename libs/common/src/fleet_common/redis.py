"""Redis client construction and the key names every service agrees on (ARCHITECTURE.md).

Cluster-safe: keys one command or script uses together share a hash tag, the part in braces
that alone decides a key's slot on Redis Cluster. An org's latest positions and geo set are
tagged with the org (`fleet:latest:{<org>}`, `fleet:geo:{<org>}`); location's detection state
hashes carry `{fleet:events}`, the events stream's whole name, so that a device's state and
its events are written by one script. Pub/sub channels are not keys: any node publishes to
every subscriber.
"""

from uuid import UUID

from redis.asyncio import Redis, RedisCluster

EVENTS_STREAM = "fleet:events"
EVENTS_GROUP = "notification"
DEVICES_CHANNEL = "fleet:devices"


def latest_key(org_id: UUID | str) -> str:
    return f"fleet:latest:{{{org_id}}}"


def geo_key(org_id: UUID | str) -> str:
    return f"fleet:geo:{{{org_id}}}"


def live_channel(org_id: UUID | str) -> str:
    return f"fleet:live:{org_id}"


def detection_state_key(device_id: UUID | str) -> str:
    """The location service's detection state of a device: a hash whose `METERS_FIELD` holds
    the device's meters (`{"vehicle_id", "odometer_km", "engine_hours"}`, JSON) for the
    vehicle service's maintenance; the other fields are the detector's own.

    In the events stream's hash slot: the detector's CAS script writes both at once."""
    return f"fleet:detect:{{{EVENTS_STREAM}}}:{device_id}"


METERS_FIELD = "m"


def create_redis(url: str, *, cluster: bool = False) -> Redis | RedisCluster:
    """A client for the Redis at `url`, or for the Redis Cluster `url` is a node of. Both
    answer the same commands, pipelines, scripts and pub/sub the services use."""
    options = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 30}
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, retry_on_timeout=True, **options)
