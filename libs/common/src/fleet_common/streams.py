"""Reading a Redis stream in a consumer group, at least once.

Entries are read with XREADGROUP and handed to the caller, who acknowledges what it has
handled; an entry its reader left pending (a crash, or a handler that failed) is claimed with
XAUTOCLAIM once idle for `claim_idle_ms`, by whichever replica claims first. Consumers idle
for an hour with nothing pending (replicas long gone) are removed from the group.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from fleet_common.logging import get_logger

log = get_logger(__name__)

DEAD_CONSUMER_IDLE_MS = 3_600_000
# A whole claim pass is at most this many XAUTOCLAIM pages.
MAX_CLAIM_PAGES = 100

# entries, and for claimed entries their delivery counts (None for a fresh read: the first).
Handler = Callable[[list, dict | None], Awaitable[None]]


class GroupReader:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        name: str,
        handle: Handler,
        *,
        start_id: str,
        count: int,
        block_ms: int,
        claim_idle_ms: int,
        claim_interval_s: float,
        count_deliveries: bool = False,
    ) -> None:
        """`start_id` is where a new group starts ("0": the whole stream, "$": from now on);
        `count_deliveries` looks up claimed entries' delivery counts for `handle`."""
        self.redis = redis
        self.stream = stream
        self.group = group
        self.name = name
        self._handle = handle
        self._start_id = start_id
        self._count = count
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._claim_interval_s = claim_interval_s
        self._count_deliveries = count_deliveries
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return once its current read (at most `block_ms`) is over.

        Shutdown does not rely on cancelling a blocking XREADGROUP: the Redis client does
        not always let go of a cancelled read.
        """
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped; errors back off and retry, they never end the loop."""
        loop = asyncio.get_running_loop()
        last_claim_s = float("-inf")
        group_ready = False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                if loop.time() - last_claim_s >= self._claim_interval_s:
                    last_claim_s = loop.time()
                    await self.claim_stale()
                response = await self.redis.xreadgroup(
                    self.group,
                    self.name,
                    {self.stream: ">"},
                    count=self._count,
                    block=self._block_ms,
                )
                for _stream, entries in response or []:
                    await self._handle(entries, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    group_ready = False  # the stream was deleted: make the group again
                log.warning("stream consumer error; retrying", stream=self.stream, error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                self.stream, self.group, id=self._start_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def claim_stale(self) -> None:
        """Take over entries left pending too long, then forget long-gone consumers."""
        start = "0-0"
        for _ in range(MAX_CLAIM_PAGES):
            start, entries, *_deleted = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.name,
                min_idle_time=self._claim_idle_ms,
                start_id=start,
                count=self._count,
            )
            if entries:
                log.info("claimed pending entries", stream=self.stream, count=len(entries))
                delivered = await self._delivery_counts(entries) if self._count_deliveries else {}
                await self._handle(entries, delivered)
            if start in (b"0-0", "0-0"):
                break
        for consumer in await self.redis.xinfo_consumers(self.stream, self.group):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if (
                name != self.name
                and consumer["pending"] == 0
                and consumer["idle"] > DEAD_CONSUMER_IDLE_MS
            ):
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)

    async def _delivery_counts(self, entries: list) -> dict:
        """How often each claimed entry was delivered in the group (XPENDING)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _fields in entries:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            answers = await pipe.execute()
        return {
            entry_id: found[0]["times_delivered"]
            for (entry_id, _fields), found in zip(entries, answers, strict=True)
            if found
        }
