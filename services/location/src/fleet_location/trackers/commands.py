"""Downlink commands to connected trackers, taken from Redis (docs/trackers.md).

The vehicle service pushes a command for a TCP device (`{"id", "type", "params", "ts",
"expires_at"}`) onto the device's list and publishes its uid (fleet_common.tracker_commands
has the names). Whichever location process holds that device's connection takes the list's
commands and writes them (Teltonika Codec 12, GT06 0x80); a device connecting later gets
what waits for it at its handshake, except what expired meanwhile (never written: an
`engine_stop` hours late is worse than none). Outcomes go onto the results stream in the
API's words: `delivered` when written, `acknowledged` with the device's reply text,
`failed` when the command cannot be expressed in the device's protocol.
"""

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis

from fleet_common.logging import get_logger
from fleet_common.tracker_commands import (
    COMMANDS_CHANNEL,
    RESULTS_STREAM,
    CommandNotExpressible,
    command_text,
    queue_key,
)
from fleet_location.ingest.parsing import DeviceInfo
from fleet_location.trackers import metrics

if TYPE_CHECKING:
    from fleet_location.trackers.server import TrackerServer

log = get_logger(__name__)

RESULTS_MAXLEN = 100_000


def _expired(command: dict[str, Any]) -> bool:
    expires_at = command.get("expires_at")
    if not isinstance(expires_at, str):
        return False
    try:
        return datetime.fromisoformat(expires_at.replace("Z", "+00:00")) <= datetime.now(UTC)
    except ValueError:
        return False


# Queues read in one pipelined round trip: a fleet reconnecting after a restart (thousands
# of handshakes a second) costs a few round trips on one Redis connection, not a command
# per handshake each holding one of the client's pooled connections (a bounded pool: the
# rest would fail, and the live positions and events share that pool).
DELIVERY_BATCH = 500


class CommandRelay:
    def __init__(self, redis: Redis, server: "TrackerServer") -> None:
        self._redis = redis
        self._server = server
        self._tasks: set[asyncio.Task] = set()
        self._due: set[str] = set()  # uids whose queues may hold commands
        self._wake = asyncio.Event()

    async def listen(self) -> None:
        """Deliver commands to the devices connected here, for as long as the service runs."""
        delay_s = 0.5
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(COMMANDS_CHANNEL)
                    delay_s = 0.5
                    # Anything queued while we were not subscribed.
                    for uid in list(self._server.bound_uids()):
                        self.deliver_soon(uid)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            uid = message["data"]
                            uid = uid.decode() if isinstance(uid, bytes) else str(uid)
                            if self._server.connection_of(uid) is not None:
                                self.deliver_soon(uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tracker command feed lost", error=str(exc))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 10.0)

    def deliver_soon(self, uid: str) -> None:
        self._due.add(uid)
        self._wake.set()

    async def deliver(self) -> None:
        """Take the due devices' commands and write them, for as long as the service runs."""
        delay_s = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._due:
                uids = [
                    uid
                    for uid in (self._due.pop() for _ in range(min(len(self._due), DELIVERY_BATCH)))
                    if self._server.connection_of(uid) is not None
                ]
                try:
                    await self._deliver(uids)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Still queued in Redis: tried again (and at the device's next handshake).
                    log.warning("tracker command delivery failed", error=str(exc))
                    self._due.update(uids)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 10.0)
                    continue
                delay_s = 0.5

    async def _deliver(self, uids: list[str]) -> None:
        """One command of each device's queue (the head); a device that had one is due
        again, for its next."""
        if not uids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in uids:
                pipe.lpop(queue_key(uid))
            heads = await pipe.execute()
        for uid, raw in zip(uids, heads, strict=True):
            if raw is None:
                continue
            # Each on its own: the batch's other commands are out of their queues already.
            try:
                connection = self._server.connection_of(uid)
                if connection is None or connection.closed:
                    # Gone since: back at the head of its queue, for its next connection.
                    await self._redis.lpush(queue_key(uid), raw)
                    continue
                self._due.add(uid)
                await self._send(connection, raw)
            except Exception as exc:
                log.warning("tracker command delivery failed", uid=uid, error=str(exc))

    async def _send(self, connection, raw: bytes) -> None:
        session = connection.session
        command_id = ""
        try:
            command = orjson.loads(raw)
            if not isinstance(command, dict):
                raise CommandNotExpressible("a command must be an object")
            command_id = str(command.get("id", ""))
            if _expired(command):
                # The vehicle service marks it expired by itself (same expiry).
                metrics.COMMANDS.labels(session.protocol, "expired").inc()
                return
            text = command_text(
                session.protocol, str(command.get("type")), command.get("params") or {}
            )
        except (orjson.JSONDecodeError, CommandNotExpressible) as exc:
            metrics.COMMANDS.labels(session.protocol, "failed").inc()
            await self._result(session.device, command_id, "failed", str(exc))
            return
        connection.write(session.command_bytes(text, command_id))
        metrics.COMMANDS.labels(session.protocol, "delivered").inc()
        log.info("tracker command written", uid=session.device.uid, command_id=command_id)
        await self._result(session.device, command_id, "delivered", "")

    def answered(self, protocol: str, device: DeviceInfo, command_id: str, text: str) -> None:
        metrics.COMMANDS.labels(protocol, "acknowledged").inc()
        task = asyncio.create_task(self._result(device, command_id, "acknowledged", text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _result(
        self, device: DeviceInfo | None, command_id: str, status: str, message: str
    ) -> None:
        if device is None:
            return
        await self._redis.xadd(
            RESULTS_STREAM,
            {
                "id": command_id,
                "device_id": str(device.device_id),
                "uid": device.uid,
                "org_id": str(device.org_id),
                "status": status,
                "message": message[:500],
            },
            maxlen=RESULTS_MAXLEN,
            approximate=True,
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
