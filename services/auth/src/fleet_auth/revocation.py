"""Access-token revocation: what makes sign-out, deactivation and role or password changes
take effect at once instead of when the 15-minute access token expires.

Written here, read by every service's `fleet_common.auth.RevocationList` (see its module
for the key layout). Each revocation is written before the change it belongs to commits: if
Redis cannot take it the change is refused (503) rather than made without effect, and a
change that then fails to commit has at worst signed its user out.
"""

import json
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.auth import (
    REVOCATIONS_CHANNEL,
    REVOKED_BEFORE_FIELD,
    REVOKED_TOKEN_PREFIX,
    Principal,
    revocation_key,
)
from fleet_common.errors import ServiceUnavailableError
from fleet_common.logging import get_logger

log = get_logger(__name__)

# Past a token's own lifetime there is nothing left to revoke; the margin covers the
# verifiers' 5 s expiry leeway and clock differences.
EXPIRY_MARGIN_S = 60


class Revoker:
    def __init__(self, redis: Redis, access_token_ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = access_token_ttl_s + EXPIRY_MARGIN_S

    async def revoke_user(self, user_id: uuid.UUID, reason: str) -> None:
        """Every access token of the user issued until now stops working."""
        now_ms = time.time_ns() // 1_000_000
        await self._write(user_id, {REVOKED_BEFORE_FIELD: now_ms}, reason)

    async def revoke_token(self, principal: Principal, reason: str) -> None:
        """This one access token stops working (the user's others do not)."""
        await self._write(principal.user_id, {REVOKED_TOKEN_PREFIX + principal.token_id: 1}, reason)

    async def _write(self, user_id: uuid.UUID, fields: dict, reason: str) -> None:
        key = revocation_key(user_id)
        message = json.dumps({"user_id": str(user_id), "reason": reason})
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
            # Outside the transaction: Redis Cluster's pipelines take no PUBLISH (a channel is
            # no key). The record above is what verifiers check; this only wakes WebSockets.
            await self.redis.publish(REVOCATIONS_CHANNEL, message)
        except (RedisError, OSError) as exc:
            log.error("could not revoke access tokens", user_id=str(user_id), error=str(exc))
            raise ServiceUnavailableError(
                "access tokens cannot be revoked right now; nothing was changed, retry"
            ) from exc
        log.info("access tokens revoked", user_id=str(user_id), reason=reason)
