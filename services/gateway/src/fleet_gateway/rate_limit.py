"""Fixed-window rate limiting counted in Redis, shared by every gateway replica.

A Redis round trip per request was a tenth of the gateway's CPU and two more process
wake-ups on the latency path, so counting is write-behind:

- The first request of a (group, subject, window) on this replica is counted in Redis at
  once (`INCR`), which tells the replica what the other replicas have counted so far.
- Later requests are decided here, from the last count Redis returned plus this replica's
  hits not yet sent, and are added to Redis in one pipelined batch every
  `flush_interval_s` (default 50 ms), each batch refreshing the counts.

Tolerance: on one replica (one gateway process; each gunicorn worker is one) the count is
exact. Across replicas, a replica does not see the others' last unsent hits, so a subject
spreading requests over several replicas can pass its limit by at most what it sends in
about two flush intervals (at 50 ms and 100 req/s, about 10 requests per window).

It fails open: when Redis is unreachable requests pass (readiness says Redis is degraded),
and for a few seconds after a failure Redis is not asked at all, so an outage does not add
a connect timeout to every request.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_gateway.config import RateLimit

log = get_logger(__name__)

RETRY_REDIS_AFTER_S = 5.0
DEFAULT_FLUSH_INTERVAL_S = 0.05
# Windows remembered at once (about 200 bytes each); past that, new subjects (say, a flood
# of made-up device ids) are counted in Redis on every request, as they would be anyway.
MAX_WINDOWS = 100_000


@dataclass(slots=True)
class _Window:
    window: int
    window_s: int
    counted: int = 0  # the count Redis last returned (every replica's hits)
    unsent: int = 0  # this replica's hits since, not yet added in Redis


class RateLimiter:
    def __init__(self, redis: Redis, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> None:
        self.redis = redis
        self.flush_interval_s = flush_interval_s
        self._skip_until = 0.0
        self._windows: dict[str, _Window] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def hit(self, group: str, subject: str, limit: RateLimit) -> int | None:
        """Count one request; the seconds to wait when over the limit, else None."""
        now = time.time()
        if now < self._skip_until:
            return None
        window = int(now // limit.window_s)
        key = f"fleet:ratelimit:{group}:{subject}:{window}"
        state = self._windows.get(key)
        if state is None:
            try:
                count = (await self._add({key: (1, limit.window_s)}))[key]
            except (RedisError, OSError) as exc:
                self._fail_open(now, exc)
                return None
            if len(self._windows) < MAX_WINDOWS:  # else this subject is counted in Redis only
                state = self._windows.setdefault(key, _Window(window, limit.window_s))
                state.counted = max(state.counted, count)
            if count > limit.requests:
                return self._retry_after(window, limit.window_s, now)
            return None
        if state.counted + state.unsent >= limit.requests:
            return self._retry_after(window, limit.window_s, now)
        state.unsent += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_periodically())
        return None

    async def flush(self) -> None:
        """Add every unsent hit in Redis now; forget windows that have ended."""
        now = time.time()
        if now < self._skip_until:
            return
        sent = {key: state.unsent for key, state in self._windows.items() if state.unsent}
        try:
            counts = await self._add(
                {key: (n, self._windows[key].window_s) for key, n in sent.items()}
            )
        except (RedisError, OSError) as exc:
            self._fail_open(now, exc)
            return
        for key, state in list(self._windows.items()):
            if key in sent:
                state.unsent -= sent[key]  # hits that came in meanwhile stay unsent
                state.counted = max(state.counted, counts[key])
            if (state.window + 1) * state.window_s <= now and not state.unsent:
                del self._windows[key]

    async def close(self) -> None:
        """Stop the periodic flush and send what is left."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def _flush_periodically(self) -> None:
        while self._windows:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def _add(self, hits: dict[str, tuple[int, int]]) -> dict[str, int]:
        """INCRBY each key in one round trip; the new counts.

        A new key is created with its expiry (SET NX EX) before it is counted, so a process that
        dies between the two commands never leaves a counter that lives for ever."""
        if not hits:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, (n, window_s) in hits.items():
                pipe.set(key, 0, ex=window_s, nx=True)
                pipe.incrby(key, n)
            results = await pipe.execute()
        return dict(zip(hits, results[1::2], strict=True))

    def _fail_open(self, now: float, exc: BaseException) -> None:
        self._skip_until = now + RETRY_REDIS_AFTER_S
        log.warning("rate limiter fails open: Redis unreachable", error=str(exc))

    @staticmethod
    def _retry_after(window: int, window_s: int, now: float) -> int:
        return max(1, int((window + 1) * window_s - now + 0.999))
