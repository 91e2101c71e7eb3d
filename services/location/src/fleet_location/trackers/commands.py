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


class CommandRelay:
    def __init__(self, redis: Redis, server: "TrackerServer") -> None:
        self._redis = redis
        self._server = server
        self._tasks: set[asyncio.Task] = set()

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
        task = asyncio.create_task(self._deliver(uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, uid: str) -> None:
        try:
            while (connection := self._server.connection_of(uid)) is not None:
                raw = await self._redis.lpop(queue_key(uid))
                if raw is None:
                    return
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
