"""Vehicles and their drivers over time. Every query is scoped by the caller's org."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.auth import Principal
from fleet_common.errors import NotFoundError, UnprocessableError
from fleet_vehicle.constraints import commit_or_conflict
from fleet_vehicle.events import publish_device_change, publish_event
from fleet_vehicle.listing import apply_sort, escape_like, paginate
from fleet_vehicle.models import Device, DeviceAssignment, Driver, DriverAssignment, Vehicle
from fleet_vehicle.vehicles.schemas import VehicleCreate, VehicleOut, VehicleUpdate

SORT_COLUMNS = {
    "name": Vehicle.name,
    "plate": Vehicle.plate,
    "year": Vehicle.year,
    "status": Vehicle.status,
    "type": Vehicle.type,
    "created_at": Vehicle.created_at,
    "updated_at": Vehicle.updated_at,
}


@dataclass(frozen=True)
class VehicleFilters:
    status: str | None = None
    type: str | None = None
    group: str | None = None
    tag: str | None = None
    q: str | None = None
    include_archived: bool = False


def now() -> datetime:
    return datetime.now(UTC)


async def get_vehicle(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID,
    *,
    for_update: bool = False,
    include_archived: bool = False,
) -> Vehicle:
    """The org's vehicle; a deleted (archived) one only when asked for, another org's never."""
    stmt = select(Vehicle).where(Vehicle.id == vehicle_id, Vehicle.org_id == org_id)
    if not include_archived:
        stmt = stmt.where(Vehicle.archived_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    vehicle = await session.scalar(stmt)
    if vehicle is None:
        raise NotFoundError("vehicle not found")
    return vehicle


async def current_drivers(
    session: AsyncSession, vehicle_ids: list[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    if not vehicle_ids:
        return {}
    rows = await session.execute(
        select(DriverAssignment.vehicle_id, DriverAssignment.driver_id).where(
            DriverAssignment.vehicle_id.in_(vehicle_ids), DriverAssignment.ended_at.is_(None)
        )
    )
    return {vehicle_id: driver_id for vehicle_id, driver_id in rows.all()}


async def to_out(session: AsyncSession, vehicles: list[Vehicle]) -> list[VehicleOut]:
    drivers = await current_drivers(session, [v.id for v in vehicles])
    return [
        VehicleOut.model_validate(v).model_copy(update={"current_driver_id": drivers.get(v.id)})
        for v in vehicles
    ]


async def list_vehicles(
    session: AsyncSession,
    org_id: uuid.UUID,
    filters: VehicleFilters,
    sort: str,
    limit: int,
    offset: int,
) -> tuple[list[Vehicle], int]:
    stmt = select(Vehicle).where(Vehicle.org_id == org_id)
    if not filters.include_archived:
        stmt = stmt.where(Vehicle.archived_at.is_(None))
    if filters.status:
        stmt = stmt.where(Vehicle.status == filters.status)
    if filters.type:
        stmt = stmt.where(Vehicle.type == filters.type)
    if filters.group:
        stmt = stmt.where(Vehicle.group == filters.group)
    if filters.tag:
        stmt = stmt.where(Vehicle.tags.contains([filters.tag]))
    if filters.q:
        pattern = f"%{escape_like(filters.q)}%"
        stmt = stmt.where(
            or_(Vehicle.name.ilike(pattern, escape="\\"), Vehicle.plate.ilike(pattern, escape="\\"))
        )
    stmt = apply_sort(stmt, sort, SORT_COLUMNS, Vehicle.id)
    rows, total = await paginate(session, stmt, limit, offset)
    return list(rows), total


async def create_vehicle(
    session: AsyncSession, principal: Principal, data: VehicleCreate
) -> Vehicle:
    vehicle = Vehicle(org_id=principal.org_id, **data.model_dump())
    session.add(vehicle)
    await commit_or_conflict(session)
    await session.refresh(vehicle)
    return vehicle


async def devices_of(session: AsyncSession, vehicle_id: uuid.UUID) -> list[Device]:
    return list(
        (
            await session.scalars(
                select(Device).where(Device.vehicle_id == vehicle_id, Device.archived_at.is_(None))
            )
        ).all()
    )


async def update_vehicle(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    data: VehicleUpdate,
) -> Vehicle:
    vehicle = await get_vehicle(session, principal.org_id, vehicle_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    # The location service caches each device's speed limit, vehicle group (events carry
    # it) and the meters it counts from: a change of any must reach its cache.
    cached_changed = any(
        name in changes and changes[name] != getattr(vehicle, name)
        for name in ("speed_limit_kph", "group", "odometer_km", "engine_hours")
    )
    for field, value in changes.items():
        setattr(vehicle, field, value)
    devices = await devices_of(session, vehicle.id) if cached_changed else []
    await commit_or_conflict(session)
    await session.refresh(vehicle)
    # Tell the location service to drop those devices from its cache.
    for device in devices:
        await publish_device_change(redis, "upsert", device.uid, device.id)
    return vehicle


async def archive_vehicle(
    session: AsyncSession, redis: Redis, principal: Principal, vehicle_id: uuid.UUID
) -> None:
    """Delete: the vehicle is gone for the API (404, out of lists), its driver and devices
    are unassigned; the row stays, archived, for history (`include_archived=true`)."""
    vehicle = await get_vehicle(session, principal.org_id, vehicle_id, for_update=True)
    ended = now()
    vehicle.archived_at = ended
    await session.execute(
        update(DriverAssignment)
        .where(DriverAssignment.vehicle_id == vehicle.id, DriverAssignment.ended_at.is_(None))
        .values(ended_at=ended)
    )
    await session.execute(
        update(DeviceAssignment)
        .where(DeviceAssignment.vehicle_id == vehicle.id, DeviceAssignment.ended_at.is_(None))
        .values(ended_at=ended)
    )
    devices = await devices_of(session, vehicle.id)
    for device in devices:
        device.vehicle_id = None
    await commit_or_conflict(session)
    for device in devices:
        await publish_device_change(redis, "upsert", device.uid, device.id)


async def assign_driver(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    driver_id: uuid.UUID | None,
) -> DriverAssignment | None:
    """Put a driver in the vehicle (ending the vehicle's and the driver's open assignments),
    or with None take the current driver out; a change raises `driver_changed`."""
    vehicle = await get_vehicle(session, principal.org_id, vehicle_id, for_update=True)
    driver = None
    if driver_id is not None:
        driver = await session.scalar(
            select(Driver)
            .where(
                Driver.id == driver_id,
                Driver.org_id == principal.org_id,
                Driver.archived_at.is_(None),
            )
            .with_for_update()
        )
        if driver is None:
            raise UnprocessableError("driver not found", field="driver_id")
    current = await session.scalar(
        select(DriverAssignment).where(
            DriverAssignment.vehicle_id == vehicle.id, DriverAssignment.ended_at.is_(None)
        )
    )
    if current is not None and driver is not None and current.driver_id == driver.id:
        return current
    ended = now()
    conditions = [DriverAssignment.vehicle_id == vehicle.id]
    if driver is not None:
        conditions.append(DriverAssignment.driver_id == driver.id)
    await session.execute(
        update(DriverAssignment)
        .where(or_(*conditions), DriverAssignment.ended_at.is_(None))
        .values(ended_at=ended)
    )
    assignment = None
    if driver is not None:
        assignment = DriverAssignment(
            org_id=principal.org_id,
            vehicle_id=vehicle.id,
            driver_id=driver.id,
            started_at=ended,
            assigned_by=principal.user_id,
        )
        session.add(assignment)
    previous_driver_id = current.driver_id if current is not None else None
    group = vehicle.group
    await commit_or_conflict(session)
    if previous_driver_id != driver_id:
        await publish_event(
            redis,
            "driver_changed",
            org_id=principal.org_id,
            vehicle_id=vehicle_id,
            device_id=None,
            vehicle_group=group,
            details={
                "driver_id": str(driver_id) if driver_id else None,
                "previous_driver_id": str(previous_driver_id) if previous_driver_id else None,
                "changed_by": str(principal.user_id),
            },
        )
    return assignment


async def driver_history(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID,
    limit: int,
    offset: int,
    include_archived: bool = False,
):
    await get_vehicle(session, org_id, vehicle_id, include_archived=include_archived)
    stmt = (
        select(DriverAssignment)
        .where(DriverAssignment.vehicle_id == vehicle_id, DriverAssignment.org_id == org_id)
        .order_by(DriverAssignment.started_at.desc(), DriverAssignment.id)
    )
    return await paginate(session, stmt, limit, offset)


async def device_history(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID,
    limit: int,
    offset: int,
    include_archived: bool = False,
):
    await get_vehicle(session, org_id, vehicle_id, include_archived=include_archived)
    stmt = (
        select(DeviceAssignment)
        .where(DeviceAssignment.vehicle_id == vehicle_id, DeviceAssignment.org_id == org_id)
        .order_by(DeviceAssignment.started_at.desc(), DeviceAssignment.id)
    )
    return await paginate(session, stmt, limit, offset)
