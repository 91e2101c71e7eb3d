"""What the vehicle service announces on Redis.

Device changes go on the `fleet:devices` channel, so that caches of uid -> device drop them.
Events that happen here rather than in a position (`driver_changed`, `command_result`) go
on the `fleet:events` stream in the location service's event shape (docs/events.md), so
that alert rules take them like any other.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_common.redis import DEVICES_CHANNEL, EVENTS_STREAM

log = get_logger(__name__)

DeviceAction = Literal["upsert", "delete"]
# As the location service caps the stream (LOCATION_EVENTS_STREAM_MAXLEN's default).
EVENTS_STREAM_MAXLEN = 100_000


async def publish_device_change(
    redis: Redis, action: DeviceAction, uid: str, device_id: uuid.UUID
) -> None:
    """Best effort: the change is committed already; a subscriber that misses it falls back
    on its cache's expiry, so a Redis outage must not fail the request."""
    message = json.dumps({"action": action, "uid": uid, "device_id": str(device_id)})
    try:
        await redis.publish(DEVICES_CHANNEL, message)
    except RedisError as exc:
        log.warning("could not publish a device change", uid=uid, error=str(exc))


async def publish_event(
    redis: Redis,
    type_: str,
    *,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID | None,
    device_id: uuid.UUID | None,
    details: dict[str, Any],
    vehicle_group: str | None = None,
) -> None:
    """Add an event to `fleet:events`. Best effort like device changes: what it reports is
    committed already, and a Redis outage must not undo or fail it."""
    event = {
        "id": str(uuid.uuid4()),
        "type": type_,
        "org_id": str(org_id),
        "vehicle_id": str(vehicle_id) if vehicle_id else None,
        "vehicle_group": vehicle_group,
        "device_id": str(device_id) if device_id else None,
        "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "position": None,
        "details": details,
    }
    try:
        await redis.xadd(
            EVENTS_STREAM,
            {"event": json.dumps(event)},
            maxlen=EVENTS_STREAM_MAXLEN,
            approximate=True,
        )
    except RedisError as exc:
        log.warning("could not publish an event", type=type_, error=str(exc))
