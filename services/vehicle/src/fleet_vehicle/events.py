"""Device changes on the `fleet:devices` channel, so that caches of uid -> device drop them."""

import json
import uuid
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_common.redis import DEVICES_CHANNEL

log = get_logger(__name__)

DeviceAction = Literal["upsert", "delete"]


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
