"""Maintenance schedules: CRUD, servicing, and the meters they are judged by.

The location service counts each vehicle's meters (odometer, engine hours) and detects
`maintenance_due`; it learns the schedules with the device lookup (`/internal/devices`),
so every change here tells it to look the vehicle's devices up again (`fleet:devices`).
Every query is scoped by the caller's org.
"""

import uuid
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.auth import Principal
from fleet_common.errors import NotFoundError, UnprocessableError
from fleet_common.logging import get_logger
from fleet_common.redis import METERS_FIELD, detection_state_key
from fleet_vehicle.constraints import commit_or_conflict
from fleet_vehicle.events import publish_device_change
from fleet_vehicle.listing import paginate
from fleet_vehicle.maintenance.schemas import (
    MAX_INTERVAL,
    MaintenanceCreate,
    MaintenanceOut,
    MaintenanceServiced,
    MaintenanceUpdate,
)
from fleet_vehicle.models import MaintenanceSchedule, Vehicle
from fleet_vehicle.vehicles.service import devices_of, get_vehicle

log = get_logger(__name__)

# Bounds what every lookup of the vehicle's devices carries to the location service.
MAX_SCHEDULES_PER_VEHICLE = 50


async def current_meters(session: AsyncSession, redis: Redis, vehicle: Vehicle) -> dict[str, float]:
    """The vehicle's meters now: what the location service counted on its devices (the
    highest if it has several), else the values last entered on the vehicle."""
    meters = {"odometer_km": vehicle.odometer_km, "engine_hours": vehicle.engine_hours}
    devices = await devices_of(session, vehicle.id)
    if not devices:
        return meters
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for device in devices:
                pipe.hget(detection_state_key(device.id), METERS_FIELD)
            counted = await pipe.execute()
    except RedisError as exc:
        log.warning("could not read the vehicle's meters", error=str(exc))
        return meters
    found: dict[str, float] = {}
    for raw in counted:
        try:
            document = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            continue
        # A device moved from another vehicle keeps that vehicle's count until it reports.
        if not isinstance(document, dict) or document.get("vehicle_id") != str(vehicle.id):
            continue
        for name in meters:
            value = document.get(name)
            if isinstance(value, int | float):
                found[name] = max(found.get(name, value), value)
    return {**meters, **found}


def _out(schedule: MaintenanceSchedule, meters: dict[str, float]) -> MaintenanceOut:
    reading = meters[schedule.meter]
    return MaintenanceOut(
        id=schedule.id,
        vehicle_id=schedule.vehicle_id,
        name=schedule.name,
        meter=schedule.meter,
        interval=schedule.interval,
        next_due=schedule.next_due,
        current_reading=round(reading, 3),
        due=reading >= schedule.next_due,
        last_serviced_at=schedule.last_serviced_at,
        last_serviced_reading=schedule.last_serviced_reading,
        last_serviced_by=schedule.last_serviced_by,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


async def to_out(
    session: AsyncSession, redis: Redis, vehicle: Vehicle, schedules: list[MaintenanceSchedule]
) -> list[MaintenanceOut]:
    meters = await current_meters(session, redis, vehicle) if schedules else {}
    return [_out(schedule, meters) for schedule in schedules]


async def _announce(session: AsyncSession, redis: Redis, vehicle_id: uuid.UUID) -> None:
    for device in await devices_of(session, vehicle_id):
        await publish_device_change(redis, "upsert", device.uid, device.id)


async def find(
    session: AsyncSession, org_id: uuid.UUID, vehicle_id: uuid.UUID, schedule_id: uuid.UUID
) -> tuple[Vehicle, MaintenanceSchedule]:
    """The org's vehicle (not deleted) and its schedule; another org's is not found."""
    vehicle = await get_vehicle(session, org_id, vehicle_id)
    schedule = await session.scalar(
        select(MaintenanceSchedule).where(
            MaintenanceSchedule.id == schedule_id,
            MaintenanceSchedule.vehicle_id == vehicle.id,
            MaintenanceSchedule.org_id == org_id,
        )
    )
    if schedule is None:
        raise NotFoundError("maintenance schedule not found")
    return vehicle, schedule


async def list_schedules(
    session: AsyncSession, org_id: uuid.UUID, vehicle_id: uuid.UUID, limit: int, offset: int
):
    vehicle = await get_vehicle(session, org_id, vehicle_id)
    stmt = (
        select(MaintenanceSchedule)
        .where(MaintenanceSchedule.vehicle_id == vehicle.id, MaintenanceSchedule.org_id == org_id)
        .order_by(MaintenanceSchedule.next_due, MaintenanceSchedule.id)
    )
    rows, total = await paginate(session, stmt, limit, offset)
    return vehicle, list(rows), total


async def create_schedule(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    data: MaintenanceCreate,
) -> tuple[Vehicle, MaintenanceSchedule]:
    vehicle = await get_vehicle(session, principal.org_id, vehicle_id, for_update=True)
    count = await session.scalar(
        select(func.count()).where(MaintenanceSchedule.vehicle_id == vehicle.id)
    )
    if (count or 0) >= MAX_SCHEDULES_PER_VEHICLE:
        raise UnprocessableError(
            f"a vehicle has at most {MAX_SCHEDULES_PER_VEHICLE} maintenance schedules"
        )
    next_due = data.next_due
    if next_due is None:
        next_due = (await current_meters(session, redis, vehicle))[data.meter] + data.interval
    schedule = MaintenanceSchedule(
        org_id=principal.org_id,
        vehicle_id=vehicle.id,
        name=data.name,
        meter=data.meter,
        interval=data.interval,
        next_due=round(next_due, 3),
    )
    session.add(schedule)
    await commit_or_conflict(session)
    await session.refresh(schedule)
    await _announce(session, redis, vehicle.id)
    return vehicle, schedule


async def update_schedule(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    data: MaintenanceUpdate,
) -> tuple[Vehicle, MaintenanceSchedule]:
    vehicle, schedule = await find(session, principal.org_id, vehicle_id, schedule_id)
    changes = data.model_dump(exclude_unset=True)
    interval = changes.get("interval")
    if interval is not None and interval > MAX_INTERVAL[schedule.meter]:
        limit = MAX_INTERVAL[schedule.meter]
        raise UnprocessableError(f"at most {limit:g} for {schedule.meter}", field="interval")
    for field, value in changes.items():
        setattr(schedule, field, value)
    await commit_or_conflict(session)
    await session.refresh(schedule)
    await _announce(session, redis, vehicle.id)
    return vehicle, schedule


async def delete_schedule(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
) -> None:
    vehicle, schedule = await find(session, principal.org_id, vehicle_id, schedule_id)
    await session.delete(schedule)
    await commit_or_conflict(session)
    await _announce(session, redis, vehicle.id)


async def service_schedule(
    session: AsyncSession,
    redis: Redis,
    principal: Principal,
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    data: MaintenanceServiced,
) -> tuple[Vehicle, MaintenanceSchedule]:
    """The service was done: the next one is due at the meter then plus the interval."""
    vehicle, schedule = await find(session, principal.org_id, vehicle_id, schedule_id)
    reading = data.reading
    if reading is None:
        reading = (await current_meters(session, redis, vehicle))[schedule.meter]
    schedule.last_serviced_at = datetime.now(UTC)
    schedule.last_serviced_reading = round(reading, 3)
    schedule.last_serviced_by = principal.user_id
    schedule.next_due = round(reading + schedule.interval, 3)
    await commit_or_conflict(session)
    await session.refresh(schedule)
    await _announce(session, redis, vehicle.id)
    return vehicle, schedule


async def due_points(
    session: AsyncSession, vehicle_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[MaintenanceSchedule]]:
    """The schedules of these vehicles, for the location service's device lookup."""
    if not vehicle_ids:
        return {}
    rows = await session.scalars(
        select(MaintenanceSchedule)
        .where(MaintenanceSchedule.vehicle_id.in_(vehicle_ids))
        .order_by(MaintenanceSchedule.vehicle_id, MaintenanceSchedule.id)
    )
    found: dict[uuid.UUID, list[MaintenanceSchedule]] = {}
    for schedule in rows:
        found.setdefault(schedule.vehicle_id, []).append(schedule)
    return found
