"""In-app: the alert on the org's live channel, which the gateway streams to dashboards."""

import json
from typing import Any

from redis.asyncio import Redis

from fleet_common.redis import live_channel
from fleet_notification.models import Delivery


class InAppChannel:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def send(self, delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
        message = json.dumps({"type": "alert", "data": alert}, separators=(",", ":"))
        receivers = await self.redis.publish(live_channel(delivery.org_id), message)
        return {"receivers": receivers}
