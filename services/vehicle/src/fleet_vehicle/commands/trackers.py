"""Commands for hardware trackers (`teltonika`, `gt06`): through Redis to the location service.

A tracker's TCP connection is held by one location process, not by the broker, so its
commands go onto its Redis list and its uid is published; the process holding the connection
writes them, and a tracker connecting later gets them at its handshake, until they expire
(fleet_common.tracker_commands has the contract). The outcomes come back on the results
stream, which the vehicle replicas read in one consumer group (each outcome handled once) and
apply as MQTT devices' answers are applied: the same statuses and `command_result` events.
"""

import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.logging import get_logger
from fleet_common.streams import GroupReader
from fleet_common.tracker_commands import COMMANDS_CHANNEL, RESULTS_STREAM, queue_key
from fleet_vehicle.commands.schemas import CommandResultIn
from fleet_vehicle.commands.transport import CommandsUnavailableError

log = get_logger(__name__)

# An entry a replica read and did not acknowledge (it crashed, or the database was down) is
# taken over by another replica after this long.
CLAIM_IDLE_MS = 30_000
READ_BLOCK_MS = 2_000  # under the Redis client's 5 s socket timeout
READ_COUNT = 100

ResultHandler = Callable[[str, CommandResultIn], Awaitable[None]]


class TrackerCommandQueue:
    """Queue commands for trackers; the location service delivers them."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish(self, uid: str, payload: bytes, expires_at: datetime) -> None:
        """Queue the command until `expires_at` and tell the location processes."""
        ttl_s = max(1, math.ceil((expires_at - datetime.now(UTC)).total_seconds()))
        key = queue_key(uid)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, payload)
                # The list lives as long as its longest-lived command (the location service
                # skips the ones that expired before it).
                pipe.expire(key, ttl_s, nx=True)
                pipe.expire(key, ttl_s, gt=True)
                await pipe.execute()
            # Once the command is on the list, for the process told to find it there. Not in
            # the transaction: a Redis Cluster client runs no PUBLISH in a pipeline.
            await self._redis.publish(COMMANDS_CHANNEL, uid)
        except RedisError as exc:
            raise CommandsUnavailableError(f"Redis: {exc}") from exc


class TrackerResults:
    """Read the location service's outcomes in consumer group `group` and hand each to
    `on_result`; an entry is acknowledged once handled, so a crash hands it to another
    replica (applying an outcome twice changes nothing: answers only move a command on)."""

    def __init__(
        self, redis: Redis, group: str, on_result: ResultHandler, claim_idle_ms: int = CLAIM_IDLE_MS
    ) -> None:
        self._redis = redis
        self._group = group
        self._on_result = on_result
        self.reader = GroupReader(
            redis,
            RESULTS_STREAM,
            group,
            f"vehicle-{uuid.uuid4().hex[:12]}",
            self._handle,
            # From now on: outcomes older than the group are for commands long settled.
            start_id="$",
            count=READ_COUNT,
            block_ms=READ_BLOCK_MS,
            claim_idle_ms=claim_idle_ms,
            claim_interval_s=claim_idle_ms / 1000,
        )

    async def run(self) -> None:
        """Consume until stopped; errors back off and retry."""
        await self.reader.run()

    def stop(self) -> None:
        self.reader.stop()

    async def _handle(self, entries: list, _delivered: dict | None) -> None:
        for entry_id, fields in entries:
            if fields:  # a claimed entry trimmed from the stream has none
                await self._apply(entry_id, fields)
            await self._redis.xack(RESULTS_STREAM, self._group, entry_id)

    async def _apply(self, entry_id, fields: dict) -> None:
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        try:
            result = CommandResultIn.model_validate(
                {**decoded, "message": decoded.get("message") or None}
            )
        except ValidationError as exc:
            log.warning(
                "unreadable tracker command result", entry_id=_text(entry_id), error=str(exc)[:300]
            )
            return
        await self._on_result(decoded.get("uid", ""), result)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
