"""Webhooks: a JSON POST signed with HMAC-SHA256 over `timestamp + "." + body`.

Receivers verify `X-Fleet-Signature: sha256=<hex>` with their secret and reject a
`X-Fleet-Timestamp` too far from their clock (replays).
"""

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from fleet_notification.config import Settings
from fleet_notification.delivery.channels import DeliveryError
from fleet_notification.delivery.targets import TargetRefused, check_webhook_url_syntax
from fleet_notification.models import Delivery

SIGNATURE_HEADER = "X-Fleet-Signature"
TIMESTAMP_HEADER = "X-Fleet-Timestamp"
RETRYABLE_STATUS = {408, 425, 429}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


class WebhookChannel:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    async def send(self, delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
        url, secret = delivery.target.get("url"), delivery.target.get("secret")
        if not url or not secret:
            raise DeliveryError("the rule has no webhook url and secret", permanent=True)
        try:
            # The addresses are checked where the connection is made (PinnedTransport).
            check_webhook_url_syntax(url, self.settings)
        except TargetRefused as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        body = json.dumps(
            {"type": "alert", "delivery_id": str(delivery.id), "alert": alert},
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "FleetTracker-Webhook/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            "X-Fleet-Delivery": str(delivery.id),
            "X-Fleet-Event": str(alert.get("type")),
        }
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except TargetRefused as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook request failed: {type(exc).__name__}") from exc
        outcome = {"status_code": response.status_code}
        if response.is_success:
            return outcome
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
        raise DeliveryError(
            f"webhook answered {response.status_code}", permanent=not retryable, outcome=outcome
        )
