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


# One push per command, whoever pushes it: the request that created it, or the sweep of
# `queued` commands after that request's push reached Redis but its `sent` did not reach the
# database. A tracker cannot drop a repeat (Codec 12 has no id), so a second push would
# write an engine_stop twice. The marker lives as long as the command can be delivered.
PUSH_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
    return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
-- The list lives as long as its longest-lived command (the location service skips the
-- ones that expired before it).
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
redis.call('EXPIRE', KEYS[1], ARGV[2], 'GT')
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


def pushed_key(uid: str, command_id: str) -> str:
    """The marker of a pushed command: in the slot of the device's queue (its hash tag)."""
    return f"{COMMANDS_CHANNEL}:pushed:{{{uid}}}:{command_id}"


class TrackerCommandQueue:
    """Queue commands for trackers; the location service delivers them."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._push_once = redis.register_script(PUSH_ONCE)

    async def publish(
        self, uid: str, command_id: str, payload: bytes, expires_at: datetime
    ) -> bool:
        """Queue the command until `expires_at` and tell the location processes; False if it
        was queued before (it is not queued again)."""
        ttl_s = max(1, math.ceil((expires_at - datetime.now(UTC)).total_seconds()))
        try:
            pushed = await self._push_once(
                keys=[queue_key(uid), pushed_key(uid, command_id)],
                args=[payload, ttl_s, COMMANDS_CHANNEL, uid],
            )
        except RedisError as exc:
            raise CommandsUnavailableError(f"Redis: {exc}") from exc
        if not pushed:
            log.info("tracker command already queued", uid=uid, command_id=command_id)
        return bool(pushed)


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
