"""Fixed-window rate limiting in Redis, shared by every gateway replica.

It fails open: when Redis is unreachable requests pass (readiness says Redis is degraded),
and for a few seconds after a failure Redis is not asked at all, so an outage does not add
a connect timeout to every request.
"""

import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_gateway.config import RateLimit

log = get_logger(__name__)

RETRY_REDIS_AFTER_S = 5.0


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._skip_until = 0.0

    async def hit(self, group: str, subject: str, limit: RateLimit) -> int | None:
        """Count one request; the seconds to wait when over the limit, else None."""
        now = time.time()
        if now < self._skip_until:
            return None
        window = int(now // limit.window_s)
        key = f"fleet:ratelimit:{group}:{subject}:{window}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, limit.window_s, nx=True)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._skip_until = now + RETRY_REDIS_AFTER_S
            log.warning("rate limiter fails open: Redis unreachable", error=str(exc))
            return None
        if count > limit.requests:
            return max(1, int((window + 1) * limit.window_s - now + 0.999))
        return None
