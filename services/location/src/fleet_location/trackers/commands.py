"""Downlink commands to connected trackers, taken from Redis (docs/trackers.md).

A command for a TCP device (`{"id", "type", "params", "ts"}`, the MQTT command shape) is
pushed onto the device's list `fleet:tracker-commands:{uid}` and its uid published on
`fleet:tracker-commands`. Whichever location process holds that device's connection takes
the list's commands and writes them (Teltonika Codec 12, GT06 0x80); a device connecting
later gets what waits for it (the sender sets the list's expiry). Outcomes go onto the
stream `fleet:tracker-command-results`: `sent` when written, `answered` with the device's
reply text, `failed` when the command cannot be expressed in the device's protocol.
"""

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis

from fleet_common.logging import get_logger
from fleet_location.ingest.parsing import DeviceInfo
from fleet_location.trackers import metrics

if TYPE_CHECKING:
    from fleet_location.trackers.server import TrackerServer

log = get_logger(__name__)

COMMANDS_CHANNEL = "fleet:tracker-commands"
RESULTS_STREAM = "fleet:tracker-command-results"
RESULTS_MAXLEN = 100_000
MAX_COMMAND_CHARS = 512

# What the API's command types are on each protocol: a Teltonika FMB's DOUT1 and a GT06's
# relay are what an installer wires to the starter (engine immobiliser).
_TEXTS = {
    "teltonika": {"engine_stop": "setdigout 1", "engine_resume": "setdigout 0"},
    "gt06": {"engine_stop": "RELAY,1#", "engine_resume": "RELAY,0#"},
}


def queue_key(uid: str) -> str:
    return f"{COMMANDS_CHANNEL}:{uid}"


class CommandError(ValueError):
    pass


def command_text(protocol: str, command: dict[str, Any]) -> str:
    """The text a tracker of `protocol` understands for an API command; `custom` sends
    `params.text` as it is."""
    kind = command.get("type")
    if kind == "custom":
        params = command.get("params")
        text = params.get("text") if isinstance(params, dict) else None
    else:
        text = _TEXTS.get(protocol, {}).get(str(kind))
    if not isinstance(text, str) or not text:
        raise CommandError(f"{kind!r} is not a command a {protocol} tracker takes")
    if len(text) > MAX_COMMAND_CHARS or not text.isascii() or not text.isprintable():
        raise CommandError("the command text must be printable ASCII of at most 512 characters")
    return text


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
                raise CommandError("a command must be an object")
            command_id = str(command.get("id", ""))
            text = command_text(session.protocol, command)
        except (orjson.JSONDecodeError, CommandError) as exc:
            metrics.COMMANDS.labels(session.protocol, "failed").inc()
            await self._result(session.device, command_id, "failed", str(exc))
            return
        connection.write(session.command_bytes(text, command_id))
        metrics.COMMANDS.labels(session.protocol, "sent").inc()
        await self._result(session.device, command_id, "sent", text)

    def answered(self, protocol: str, device: DeviceInfo, command_id: str, text: str) -> None:
        metrics.COMMANDS.labels(protocol, "answered").inc()
        task = asyncio.create_task(self._result(device, command_id, "answered", text))
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
                "message": message[:1000],
            },
            maxlen=RESULTS_MAXLEN,
            approximate=True,
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
