"""Devices and their broker clients. Every query is scoped by the caller's org.

The database and the broker are changed together: the broker change is made inside the
database transaction and the transaction commits only if the broker accepted it (a device
creation whose commit then fails deletes the client it created). Reconcile repairs what a
crash between the two leaves behind.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.auth import Principal, Role
from fleet_common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
    UnprocessableError,
)
from fleet_common.logging import get_logger
from fleet_common.redis import latest_key
from fleet_vehicle.broker.credentials import (
    DeviceBroker,
    DeviceCredentials,
    hash_http_key,
    new_http_key,
    new_password,
)
from fleet_vehicle.broker.dynsec import BrokerUnavailableError, DynsecCommandError
from fleet_vehicle.constraints import commit_or_conflict, conflict_from
from fleet_vehicle.devices.schemas import DeviceCreate, DeviceOut, DeviceUpdate
from fleet_vehicle.events import publish_device_change
from fleet_vehicle.listing import apply_sort, escape_like, paginate
from fleet_vehicle.models import Device, DeviceAssignment, Vehicle, uses_broker

log = get_logger(__name__)

SORT_COLUMNS = {
    "name": Device.name,
    "uid": Device.uid,
    "protocol": Device.protocol,
    "created_at": Device.created_at,
}


@dataclass(frozen=True)
class BrokerAddress:
    """Where devices connect, as told to them with their credentials."""

    host: str
    port: int

    def credentials(self, uid: str, password: str, http_key: str) -> DeviceCredentials:
        return DeviceCredentials(uid, password, self.host, self.port, http_key)


def _broker_down(exc: BrokerUnavailableError) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"the MQTT broker is unavailable: {exc}")


async def get_device(
    session: AsyncSession,
    org_id: uuid.UUID,
    device_id: uuid.UUID,
    *,
    for_update: bool = False,
    include_archived: bool = False,
) -> Device:
    """The org's device; a deleted (archived) one only when asked for."""
    stmt = select(Device).where(Device.id == device_id, Device.org_id == org_id)
    if not include_archived:
        stmt = stmt.where(Device.archived_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    device = await session.scalar(stmt)
    if device is None:
        raise NotFoundError("device not found")
    return device


async def _vehicle_in_org(
    session: AsyncSession, org_id: uuid.UUID, vehicle_id: uuid.UUID
) -> Vehicle:
    vehicle = await session.scalar(
        select(Vehicle).where(
            Vehicle.id == vehicle_id, Vehicle.org_id == org_id, Vehicle.archived_at.is_(None)
        )
    )
    if vehicle is None:
        raise UnprocessableError("vehicle not found", field="vehicle_id")
    return vehicle


async def last_seen(
    redis: Redis, org_id: uuid.UUID, devices: list[Device]
) -> dict[uuid.UUID, datetime]:
    """Newest position times from the location service's `fleet:latest:{org}` hash."""
    if not devices:
        return {}
    try:
        values = await redis.hmget(latest_key(org_id), [str(d.id) for d in devices])
    except RedisError as exc:
        log.warning("last_seen_at unavailable", error=str(exc))
        return {}
    seen = {}
    for device, raw in zip(devices, values, strict=True):
        if raw is None:
            continue
        try:
            seen[device.id] = datetime.fromisoformat(json.loads(raw)["recorded_at"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable latest position", device_id=str(device.id))
    return seen


async def to_out(redis: Redis, org_id: uuid.UUID, devices: list[Device]) -> list[DeviceOut]:
    seen = await last_seen(redis, org_id, devices)
    return [
        DeviceOut.model_validate(d).model_copy(update={"last_seen_at": seen.get(d.id)})
        for d in devices
    ]


async def list_devices(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    q: str | None,
    protocol: str | None,
    vehicle_id: uuid.UUID | None,
    active: bool | None,
    include_archived: bool,
    sort: str,
    limit: int,
    offset: int,
):
    stmt = select(Device).where(Device.org_id == org_id)
    if not include_archived:
        stmt = stmt.where(Device.archived_at.is_(None))
    if protocol:
        stmt = stmt.where(Device.protocol == protocol)
    if vehicle_id:
        stmt = stmt.where(Device.vehicle_id == vehicle_id)
    if active is not None:
        stmt = stmt.where(Device.active.is_(active))
    if q:
        pattern = f"%{escape_like(q)}%"
        stmt = stmt.where(
            or_(Device.name.ilike(pattern, escape="\\"), Device.uid.ilike(pattern, escape="\\"))
        )
    stmt = apply_sort(stmt, sort, SORT_COLUMNS, Device.id)
    rows, total = await paginate(session, stmt, limit, offset)
    return list(rows), total


async def _assign(
    session: AsyncSession, principal: Principal, device: Device, vehicle_id: uuid.UUID | None
) -> None:
    """Close the device's open assignment and open one for `vehicle_id` (None: unfitted)."""
    at = datetime.now(UTC)
    await session.execute(
        update(DeviceAssignment)
        .where(DeviceAssignment.device_id == device.id, DeviceAssignment.ended_at.is_(None))
        .values(ended_at=at)
    )
    device.vehicle_id = vehicle_id
    if vehicle_id is not None:
        session.add(
            DeviceAssignment(
                org_id=principal.org_id,
                device_id=device.id,
                vehicle_id=vehicle_id,
                started_at=at,
                assigned_by=principal.user_id,
            )
        )


async def _create_broker_client(broker: DeviceBroker, uid: str, password: str, enabled: bool):
    try:
        await broker.create_client(uid, password, enabled=enabled)
        return
    except DynsecCommandError as exc:
        if not exc.already_exists:
            raise
    # The username is taken. A leftover device client (its device gone from our database,
    # which holds the uid unique) is ours to replace; any other client is not.
    existing = await broker.dynsec.command("getClient", username=uid)
    groups = {g.get("groupname") for g in existing.get("client", {}).get("groups", [])}
    if broker.group not in groups:
        raise ConflictError("this uid is taken on the MQTT broker", field="uid")
    await broker.delete_client(uid)
    await broker.create_client(uid, password, enabled=enabled)


async def create_device(
    session: AsyncSession,
    broker: DeviceBroker,
    redis: Redis,
    address: BrokerAddress,
    principal: Principal,
    data: DeviceCreate,
) -> tuple[Device, DeviceCredentials | None]:
    """A new device, and its broker credentials (None for a TCP tracker, which has none)."""
    if data.vehicle_id is not None:
        await _vehicle_in_org(session, principal.org_id, data.vehicle_id)
    taken = await session.scalar(
        select(Device.id).where(Device.uid == data.uid, Device.archived_at.is_(None))
    )
    if taken is not None:
        raise ConflictError("a device with this uid exists", field="uid")
    device = Device(
        org_id=principal.org_id,
        uid=data.uid,
        name=data.name,
        model=data.model,
        protocol=data.protocol,
        active=data.active,
        notes=data.notes,
        credentials_rotated_at=datetime.now(UTC),
    )
    http_key = new_http_key()
    device.http_key_hash = hash_http_key(http_key)
    session.add(device)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict_from(exc) or exc from exc
    await _assign(session, principal, device, data.vehicle_id)
    if not uses_broker(device.protocol):
        await commit_or_conflict(session)
        await session.refresh(device)
        await publish_device_change(redis, "upsert", device.uid, device.id)
        return device, None
    password = new_password()
    try:
        await _create_broker_client(broker, device.uid, password, data.active)
    except BrokerUnavailableError as exc:
        await session.rollback()
        raise _broker_down(exc) from exc
    except DynsecCommandError as exc:
        await session.rollback()
        raise ServiceUnavailableError(f"the MQTT broker refused the device: {exc.error}") from exc
    except ConflictError:
        await session.rollback()
        raise
    try:
        await commit_or_conflict(session)
    except Exception as exc:
        await _undo_broker_client(broker, device.uid)
        if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError):
            # A deadlock victim, a lost connection, a failover: nothing was saved; retry.
            raise ServiceUnavailableError("the device could not be saved; retry") from exc
        raise
    await session.refresh(device)
    await publish_device_change(redis, "upsert", device.uid, device.id)
    return device, address.credentials(device.uid, password, http_key)


async def _undo_broker_client(broker: DeviceBroker, uid: str) -> None:
    try:
        await broker.delete_client(uid)
    except (BrokerUnavailableError, DynsecCommandError) as exc:
        # Reconcile disables it: a device client the database does not know.
        log.error("could not remove an orphan broker client", uid=uid, error=str(exc))


async def update_device(
    session: AsyncSession,
    broker: DeviceBroker,
    redis: Redis,
    principal: Principal,
    device_id: uuid.UUID,
    data: DeviceUpdate,
) -> Device:
    device = await get_device(session, principal.org_id, device_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if "vehicle_id" in changes and changes["vehicle_id"] != device.vehicle_id:
        if changes["vehicle_id"] is not None:
            await _vehicle_in_org(session, principal.org_id, changes["vehicle_id"])
        await _assign(session, principal, device, changes["vehicle_id"])
    changes.pop("vehicle_id", None)
    if "http_key_required" in changes:
        _set_http_key_requirement(principal, device, changes.pop("http_key_required"))
    if "protocol" in changes and uses_broker(changes["protocol"]) != uses_broker(device.protocol):
        raise ConflictError(
            "a device cannot move between MQTT/HTTP and a TCP tracker protocol: its broker "
            "client would appear or vanish; register a new device instead",
            field="protocol",
        )
    enable = changes.get("active") if uses_broker(device.protocol) else None
    for field, value in changes.items():
        setattr(device, field, value)
    if enable is not None:
        try:
            await broker.set_enabled(device.uid, enable)
        except BrokerUnavailableError as exc:
            await session.rollback()
            raise _broker_down(exc) from exc
        except DynsecCommandError as exc:
            if not exc.not_found:
                await session.rollback()
                raise ServiceUnavailableError(f"the MQTT broker refused: {exc.error}") from exc
            # The broker lost the client; reconcile re-creates it and flags the device.
            log.warning("device client missing on the broker", uid=device.uid)
    await commit_or_conflict(session)
    await session.refresh(device)
    await publish_device_change(redis, "upsert", device.uid, device.id)
    return device


def _set_http_key_requirement(principal: Principal, device: Device, required: bool) -> None:
    """Waiving the key lets anyone who knows the uid write the device's positions over HTTP,
    so only an admin may, and who did it and when stays on the device (and in the log)."""
    if required == device.http_key_required:
        return
    if not required and not principal.can(Role.admin):
        raise ForbiddenError("waiving a device's HTTP key needs the admin role")
    device.http_key_required = required
    device.http_key_waived_at = None if required else datetime.now(UTC)
    device.http_key_waived_by = None if required else principal.user_id
    log.warning(
        "device HTTP key requirement changed",
        device_id=str(device.id),
        uid=device.uid,
        http_key_required=required,
        by_user_id=str(principal.user_id),
        org_id=str(principal.org_id),
    )


async def archive_device(
    session: AsyncSession,
    broker: DeviceBroker,
    redis: Redis,
    principal: Principal,
    device_id: uuid.UUID,
) -> None:
    """Delete: the broker client is deleted (a connected device is kicked out and cannot
    come back), the device leaves its vehicle and is gone for the API (404, out of lists);
    the row stays, archived, with its history (`include_archived=true`)."""
    device = await get_device(session, principal.org_id, device_id, for_update=True)
    await _assign(session, principal, device, None)
    device.archived_at = datetime.now(UTC)
    device.active = False
    if uses_broker(device.protocol):
        try:
            await broker.delete_client(device.uid)
        except BrokerUnavailableError as exc:
            await session.rollback()
            raise _broker_down(exc) from exc
    await commit_or_conflict(session)
    await publish_device_change(redis, "delete", device.uid, device.id)


async def rotate_credentials(
    session: AsyncSession,
    broker: DeviceBroker,
    redis: Redis,
    address: BrokerAddress,
    principal: Principal,
    device_id: uuid.UUID,
) -> DeviceCredentials:
    device = await get_device(session, principal.org_id, device_id, for_update=True)
    if not uses_broker(device.protocol):
        raise ConflictError(f"a {device.protocol} tracker has no broker credentials")
    password = new_password()
    try:
        await broker.set_password(device.uid, password, enabled=device.active)
    except BrokerUnavailableError as exc:
        await session.rollback()
        raise _broker_down(exc) from exc
    http_key = new_http_key()
    device.http_key_hash = hash_http_key(http_key)
    device.credentials_reset_required = False
    device.credentials_rotated_at = datetime.now(UTC)
    await commit_or_conflict(session)
    await publish_device_change(redis, "upsert", device.uid, device.id)
    return address.credentials(device.uid, password, http_key)


async def assignment_history(
    session: AsyncSession,
    org_id: uuid.UUID,
    device_id: uuid.UUID,
    limit: int,
    offset: int,
    include_archived: bool = False,
):
    await get_device(session, org_id, device_id, include_archived=include_archived)
    stmt = (
        select(DeviceAssignment)
        .where(DeviceAssignment.device_id == device_id, DeviceAssignment.org_id == org_id)
        .order_by(DeviceAssignment.started_at.desc(), DeviceAssignment.id)
    )
    return await paginate(session, stmt, limit, offset)
