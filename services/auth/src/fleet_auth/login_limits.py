"""Brute-force protection: failed logins counted per account and per client address in Redis.

Past a limit further attempts get 429 with `Retry-After` until the window runs out; a
successful login clears the account's counter. Keys hold a hash of the email, not the email.
"""

import hashlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.errors import ServiceUnavailableError, TooManyRequestsError


def _account_key(email: str) -> str:
    return f"fleet:auth:login-failures:account:{hashlib.sha256(email.encode()).hexdigest()}"


def _address_key(address: str) -> str:
    return f"fleet:auth:login-failures:address:{address}"


class LoginLimiter:
    def __init__(self, redis: Redis, *, per_account: int, per_address: int, window_s: int) -> None:
        self.redis = redis
        self.per_account = per_account
        self.per_address = per_address
        self.window_s = window_s

    async def check(self, email: str, address: str) -> None:
        """Raise 429 when either counter is at its limit."""
        keys = (_account_key(email), _address_key(address))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                account, account_ttl, address_count, address_ttl = await pipe.execute()
        except RedisError as exc:
            # Without the counters we cannot bound guessing; refuse rather than fail open.
            raise ServiceUnavailableError("login is unavailable: Redis is unreachable") from exc
        if account is not None and int(account) >= self.per_account:
            raise TooManyRequestsError(
                "too many failed logins for this account; try again later",
                retry_after_s=account_ttl if account_ttl > 0 else self.window_s,
            )
        if address_count is not None and int(address_count) >= self.per_address:
            raise TooManyRequestsError(
                "too many failed logins from this address; try again later",
                retry_after_s=address_ttl if address_ttl > 0 else self.window_s,
            )

    async def record_failure(self, email: str, address: str) -> None:
        try:
            # Not a transaction: the two counters may be on different Redis Cluster nodes. The
            # window starts at the first failure (SET NX with its expiry, which INCR keeps), so
            # no counter is ever left without one, and later failures do not extend it.
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in (_account_key(email), _address_key(address)):
                    pipe.set(key, 0, ex=self.window_s, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailableError("login is unavailable: Redis is unreachable") from exc

    async def record_success(self, email: str) -> None:
        try:
            await self.redis.delete(_account_key(email))
        except RedisError as exc:
            raise ServiceUnavailableError("login is unavailable: Redis is unreachable") from exc
