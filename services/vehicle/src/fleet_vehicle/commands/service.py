"""Downlink commands: creating, sending, resending on reconnection, results and expiry.

The vehicle service owns commands because it owns devices (a command is sent to a device
and checked against it: its org, protocol, state) and already administers the broker. A
command is a row first (`queued`), then handed on (`sent`; the expiry sweep retries one that
could not be): to the broker at QoS 1 for MQTT devices, to the tracker's Redis queue for
hardware trackers (commands/trackers.py). Every time an MQTT device reports `online` on its
status topic its open commands are sent again until they expire, so a device that was
offline, or lost its session, still gets them (devices drop repeats by `id`); a tracker's
queue waits for its next connection instead, and it gets each command once. A device (or
the location service for a tracker) answers `delivered`, then `acknowledged` or `failed`;
each answer, and an expiry, raises a `command_result` event.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.auth import Principal
from fleet_common.errors import ConflictError
from fleet_common.logging import get_logger
from fleet_common.redis import latest_key
from fleet_common.tracker_commands import CommandNotExpressible, command_text
from fleet_vehicle.commands.schemas import CommandCreate, CommandResultIn
from fleet_vehicle.commands.trackers import TrackerCommandQueue
from fleet_vehicle.commands.transport import CommandsUnavailableError, CommandTransport
from fleet_vehicle.devices.service import get_device
from fleet_vehicle.events import publish_event
from fleet_vehicle.listing import paginate
from fleet_vehicle.models import (
    OPEN_COMMAND_STATUSES,
    TCP_PROTOCOLS,
    CommandStatus,
    CommandType,
    Device,
    DeviceCommand,
    DeviceProtocol,
    Vehicle,
)

log = get_logger(__name__)

# Protocols whose devices take commands: MQTT devices on their command topic, hardware
# trackers through the location service's TCP connection to them.
COMMAND_PROTOCOLS = frozenset({DeviceProtocol.mqtt, *TCP_PROTOCOLS})
# An answer moves a command forward only: from these statuses.
_ALLOWED_FROM = {
    "delivered": (CommandStatus.queued, CommandStatus.sent),
    "acknowledged": OPEN_COMMAND_STATUSES,
    "failed": OPEN_COMMAND_STATUSES,
}


def now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def device_payload(command: DeviceCommand) -> dict:
    """What the device receives: `{"id", "type", "params", "ts"}`."""
    return {
        "id": str(command.id),
        "type": command.type,
        "params": command.params,
        "ts": _iso(now()),
    }


class Downlink:
    """Where a device's commands go, by its protocol."""

    def __init__(self, mqtt: CommandTransport, trackers: TrackerCommandQueue) -> None:
        self.mqtt = mqtt
        self.trackers = trackers

    async def publish(self, protocol: str, command: DeviceCommand) -> None:
        payload = device_payload(command)
        if protocol in TCP_PROTOCOLS:
            # The location service skips a command whose expiry passed while it waited.
            payload["expires_at"] = _iso(command.expires_at)
            await self.trackers.publish(
                command.uid, str(command.id), json.dumps(payload).encode(), command.expires_at
            )
        else:
            await self.mqtt.publish(command.uid, json.dumps(payload).encode())


async def _vehicle_stopped(
    redis: Redis, org_id: uuid.UUID, device_id: uuid.UUID, *, max_speed_kph: float, max_age_s: float
) -> tuple[bool, str]:
    """Whether the device's newest position says it stands still, and why not."""
    try:
        raw = await redis.hget(latest_key(org_id), str(device_id))
    except RedisError:
        return False, "the vehicle's position is unavailable"
    if raw is None:
        return False, "no position of the vehicle is known"
    latest = json.loads(raw)
    recorded_at = datetime.fromisoformat(latest["recorded_at"].replace("Z", "+00:00"))
    if (now() - recorded_at).total_seconds() > max_age_s:
        return False, "the vehicle's newest position is too old to tell"
    speed = latest.get("speed_kph") or 0.0
    if speed > max_speed_kph:
        return False, f"the vehicle is moving ({speed:.0f} km/h)"
    return True, ""


async def create_command(
    session: AsyncSession,
    redis: Redis,
    downlink: Downlink,
    principal: Principal,
    device_id: uuid.UUID,
    data: CommandCreate,
    *,
    stopped_max_speed_kph: float,
    stopped_max_age_s: float,
) -> DeviceCommand:
    device = await get_device(session, principal.org_id, device_id)
    if device.protocol not in COMMAND_PROTOCOLS:
        raise ConflictError(f"{device.protocol} devices take no commands")
    if not device.active:
        raise ConflictError("the device is disabled")
    if device.protocol in TCP_PROTOCOLS:
        try:
            command_text(device.protocol, data.type, data.params)
        except CommandNotExpressible as exc:
            # Known now, not when the tracker connects: answered here.
            raise ConflictError(str(exc)) from exc
    if data.type == CommandType.engine_stop and not data.force:
        stopped, why = await _vehicle_stopped(
            redis,
            principal.org_id,
            device.id,
            max_speed_kph=stopped_max_speed_kph,
            max_age_s=stopped_max_age_s,
        )
        if not stopped:
            raise ConflictError(f"engine_stop needs the vehicle stopped ({why}), or force")
    command = DeviceCommand(
        id=uuid.uuid4(),
        org_id=principal.org_id,
        device_id=device.id,
        uid=device.uid,
        type=data.type,
        params=data.params,
        status=CommandStatus.queued,
        force=data.force,
        created_by=principal.user_id,
        expires_at=now() + timedelta(seconds=data.expires_in_s),
        send_count=0,
    )
    session.add(command)
    await session.commit()
    if data.type in (CommandType.engine_stop, CommandType.engine_resume):
        # The audit trail of dangerous commands: the row (who, when, forced) and this line.
        log.warning(
            "audit: engine command",
            command_id=str(command.id),
            command_type=data.type,
            device_id=str(device.id),
            user_id=str(principal.user_id),
            forced=data.force,
        )
    await send(session, downlink, command, device.protocol)
    return command


async def send(
    session: AsyncSession, downlink: Downlink, command: DeviceCommand, protocol: str
) -> None:
    """Hand the command on; it stays `queued` if the broker (or Redis) is unreachable."""
    try:
        await downlink.publish(protocol, command)
    except CommandsUnavailableError as exc:
        log.warning("command not sent yet", command_id=str(command.id), error=str(exc))
        return
    sent = await session.execute(
        update(DeviceCommand)
        .where(DeviceCommand.id == command.id)
        .values(
            status=_status_after_send(),
            sent_at=now(),
            send_count=DeviceCommand.send_count + 1,
        )
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    if sent.rowcount:
        await session.refresh(command)


def _status_after_send():
    """A resend does not move an answered command back: only `queued` becomes `sent`."""
    return case(
        (DeviceCommand.status == CommandStatus.queued, CommandStatus.sent.value),
        else_=DeviceCommand.status,
    )


async def list_commands(
    session: AsyncSession,
    org_id: uuid.UUID,
    device_id: uuid.UUID,
    status: CommandStatus | None,
    limit: int,
    offset: int,
):
    await get_device(session, org_id, device_id)
    stmt = select(DeviceCommand).where(
        DeviceCommand.device_id == device_id, DeviceCommand.org_id == org_id
    )
    if status is not None:
        stmt = stmt.where(DeviceCommand.status == status)
    stmt = stmt.order_by(DeviceCommand.created_at.desc(), DeviceCommand.id)
    return await paginate(session, stmt, limit, offset)


async def open_commands(session: AsyncSession, uid: str) -> list[DeviceCommand]:
    """The device's commands not yet answered nor expired, oldest first."""
    return list(
        await session.scalars(
            select(DeviceCommand)
            .where(
                DeviceCommand.uid == uid,
                DeviceCommand.status.in_((CommandStatus.queued, CommandStatus.sent)),
                DeviceCommand.expires_at > now(),
            )
            .order_by(DeviceCommand.created_at)
        )
    )


async def _raise_result(redis: Redis, session: AsyncSession, command: DeviceCommand) -> None:
    vehicle = await session.scalar(
        select(Vehicle)
        .join(Device, Device.vehicle_id == Vehicle.id)
        .where(Device.id == command.device_id)
    )
    await publish_event(
        redis,
        "command_result",
        org_id=command.org_id,
        vehicle_id=vehicle.id if vehicle else None,
        device_id=command.device_id,
        vehicle_group=vehicle.group if vehicle else None,
        details={
            "command_id": str(command.id),
            "command_type": command.type,
            "status": command.status,
            "message": command.message,
            "created_by": str(command.created_by),
        },
    )


async def record_result(
    session: AsyncSession, redis: Redis, uid: str, result: CommandResultIn
) -> DeviceCommand | None:
    """Apply a device's answer; None if it names no open command of this device (an answer
    published for another device's command, a late one, a repeat)."""
    at = now()
    values: dict = {"status": result.status, "message": result.message}
    if result.status == "delivered":
        values["delivered_at"] = at
    else:
        values["completed_at"] = at
    updated = await session.scalars(
        update(DeviceCommand)
        .where(
            DeviceCommand.id == result.id,
            DeviceCommand.uid == uid,
            DeviceCommand.status.in_(_ALLOWED_FROM[result.status]),
            DeviceCommand.expires_at > at,
        )
        .values(**values)
        .returning(DeviceCommand)
        .execution_options(synchronize_session=False)
    )
    command = updated.first()
    await session.commit()
    if command is None:
        return None
    await _raise_result(redis, session, command)
    return command


async def expire_commands(session: AsyncSession, redis: Redis) -> int:
    """Mark open commands past their expiry `expired` (each once, whichever replica)."""
    expired = list(
        await session.scalars(
            update(DeviceCommand)
            .where(
                DeviceCommand.status.in_(OPEN_COMMAND_STATUSES),
                DeviceCommand.expires_at <= now(),
            )
            .values(status=CommandStatus.expired, completed_at=now())
            .returning(DeviceCommand)
            .execution_options(synchronize_session=False)
        )
    )
    await session.commit()
    for command in expired:
        await _raise_result(redis, session, command)
    return len(expired)


# A command stays `queued` from its creation's commit until the request that created it has
# handed it on (ms); the sweep leaves it that long, or it would send it a second time — an
# engine_stop twice, for a tracker, which cannot drop repeats.
QUEUED_GRACE_S = 5.0


async def send_queued(session: AsyncSession, downlink: Downlink, limit: int = 500) -> None:
    """Send commands the broker (or Redis) never took: it was down when they were created."""
    queued = await session.execute(
        select(DeviceCommand, Device.protocol)
        .join(Device, Device.id == DeviceCommand.device_id)
        .where(
            DeviceCommand.status == CommandStatus.queued,
            DeviceCommand.expires_at > now(),
            DeviceCommand.created_at < now() - timedelta(seconds=QUEUED_GRACE_S),
        )
        .order_by(DeviceCommand.created_at)
        .limit(limit)
    )
    for command, protocol in list(queued):
        if protocol in TCP_PROTOCOLS or downlink.mqtt.connected:
            await send(session, downlink, command, protocol)


class CommandAnswers:
    """Handles what devices publish back (results, and `online`: resend open commands), and
    the location service's outcomes for trackers."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        downlink: Downlink,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.downlink = downlink

    async def __call__(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) == 4 and parts[2:] == ["commands", "result"]:
            await self._result(parts[1], payload)
        elif len(parts) == 3 and parts[2] == "status" and payload.strip() == b"online":
            await self.resend(parts[1])

    async def _result(self, uid: str, payload: bytes) -> None:
        try:
            result = CommandResultIn.model_validate_json(payload)
        except ValueError as exc:
            log.warning("unreadable command result", uid=uid, error=str(exc)[:300])
            return
        await self.apply(uid, result)

    async def apply(self, uid: str, result: CommandResultIn) -> None:
        """Apply an answer naming `uid`'s command (a device's, or a tracker's outcome)."""
        async with self.sessionmaker() as session:
            if await record_result(session, self.redis, uid, result) is None:
                log.info("command result for no open command", uid=uid, command_id=str(result.id))

    async def resend(self, uid: str) -> None:
        async with self.sessionmaker() as session:
            for command in await open_commands(session, uid):
                await send(session, self.downlink, command, DeviceProtocol.mqtt)
