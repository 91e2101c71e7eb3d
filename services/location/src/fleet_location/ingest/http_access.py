"""Who may send HTTP (OsmAnd / Traccar Client) positions, and how often.

A device uid is an IMEI or serial printed on the box, so it cannot be the credential: every
request carries the device's HTTP key as the `key` parameter (in the URL template of
OsmAnd, or appended to Traccar Client's server URL), checked against the SHA-256 the
vehicle service keeps. A device an admin opted out (legacy hardware) is admitted without.

Rate limits are fixed windows counted in Redis, so every replica shares them: one per
source address, counted before anything else (an unauthenticated flood is refused before
it costs a device lookup), and one per device, counted only for requests that proved to be
that device (forged requests cannot spend a real device's budget). Both fail open when
Redis is unreachable: ingest must not stop with Redis, and the key check still applies.
"""

import hashlib
import hmac
import re
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_location.ingest.parsing import DeviceInfo, Reason, Rejected

log = get_logger(__name__)

KEY_PARAMETER = "key"
MAX_KEY_LENGTH = 128
RETRY_REDIS_AFTER_S = 5.0
# The key's value in a stored query string or form body (dead letters keep the payload).
_KEY_IN_PAYLOAD = re.compile(rb"(?<![^&?])(key=)[^&\s]*")


MISSING_KEY_DETAIL = "the device's HTTP key is required (key=…)"
INVALID_KEY_DETAIL = "the HTTP key is not this device's"


def redact_key(payload: bytes) -> bytes:
    """The payload with the `key` parameter's value replaced, for the dead-letter store."""
    return _KEY_IN_PAYLOAD.sub(rb"\1[redacted]", payload)


def check_key(device: DeviceInfo, key: str | None) -> None:
    """Raise `Rejected` unless `key` is the device's key (or the device is opted out)."""
    if not device.http_key_required:
        return
    if not key:
        raise Rejected(Reason.MISSING_KEY, MISSING_KEY_DETAIL)
    digest = hashlib.sha256(key[:MAX_KEY_LENGTH].encode()).digest()
    if device.http_key_sha256 is None or not hmac.compare_digest(digest, device.http_key_sha256):
        raise Rejected(Reason.INVALID_KEY, INVALID_KEY_DETAIL)


class IngestRateLimiter:
    """Fixed-window request counts per source address and per device, in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        per_address: int,
        per_device: int,
        window_s: int,
    ) -> None:
        self.redis = redis
        self.per_address = per_address
        self.per_device = per_device
        self.window_s = window_s
        self._skip_until = 0.0

    async def admit_address(self, address: str) -> None:
        await self._count(f"address:{address}", self.per_address)

    async def admit_device(self, device: DeviceInfo) -> None:
        await self._count(f"device:{device.device_id}", self.per_device)

    async def _count(self, subject: str, limit: int) -> None:
        now = time.time()
        if now < self._skip_until:
            return
        window = int(now // self.window_s)
        key = f"fleet:ingest-limit:{subject}:{window}"
        try:
            # Created with its expiry before it is counted: no counter is left without one.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(key, 0, ex=self.window_s, nx=True)
                pipe.incr(key)
                _, count = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._skip_until = now + RETRY_REDIS_AFTER_S
            log.warning("ingest rate limit fails open: Redis unreachable", error=str(exc))
            return
        if count > limit:
            retry_after_s = max(1, int((window + 1) * self.window_s - now + 0.999))
            raise RateLimited(subject.split(":", 1)[0], retry_after_s)


class RateLimited(Rejected):
    def __init__(self, scope: str, retry_after_s: int) -> None:
        super().__init__(Reason.RATE_LIMITED, f"too many positions from this {scope}; slow down")
        self.retry_after_s = retry_after_s
