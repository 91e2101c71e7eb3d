"""HTTP routes of /vehicles/{id}/maintenance."""

import uuid

from fastapi import APIRouter, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_vehicle.dependencies import RedisDep
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page
from fleet_vehicle.maintenance import service
from fleet_vehicle.maintenance.schemas import (
    MaintenanceCreate,
    MaintenanceOut,
    MaintenanceServiced,
    MaintenanceUpdate,
)

router = APIRouter(prefix="/vehicles/{vehicle_id}/maintenance", tags=["maintenance"])


@router.get("", response_model=Page[MaintenanceOut])
async def list_schedules(
    vehicle_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
):
    """The vehicle's maintenance schedules, the soonest due first, with its meter now."""
    vehicle, rows, total = await service.list_schedules(
        session, user.org_id, vehicle_id, limit, offset
    )
    items = await service.to_out(session, redis, vehicle, rows)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "",
    response_model=MaintenanceOut,
    status_code=status.HTTP_201_CREATED,
    description=(
        "A recurring service, due when the vehicle's meter (`odometer_km` or `engine_hours`) "
        "reaches `next_due`; then a `maintenance_due` event is raised, once per due point."
    ),
)
async def create_schedule(
    vehicle_id: uuid.UUID,
    body: MaintenanceCreate,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
):
    vehicle, schedule = await service.create_schedule(session, redis, user, vehicle_id, body)
    return (await service.to_out(session, redis, vehicle, [schedule]))[0]


@router.get("/{schedule_id}", response_model=MaintenanceOut)
async def get_schedule(
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
):
    vehicle, schedule = await service.find(session, user.org_id, vehicle_id, schedule_id)
    return (await service.to_out(session, redis, vehicle, [schedule]))[0]


@router.patch("/{schedule_id}", response_model=MaintenanceOut)
async def update_schedule(
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    body: MaintenanceUpdate,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
):
    vehicle, schedule = await service.update_schedule(
        session, redis, user, vehicle_id, schedule_id, body
    )
    return (await service.to_out(session, redis, vehicle, [schedule]))[0]


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_schedule(
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
) -> None:
    await service.delete_schedule(session, redis, user, vehicle_id, schedule_id)


@router.post(
    "/{schedule_id}/service",
    response_model=MaintenanceOut,
    description=(
        "Record that the service was done: `next_due` becomes the meter at the service "
        "(`reading`, default the vehicle's meter now) plus the interval, and the next "
        "crossing raises `maintenance_due` again."
    ),
)
async def service_schedule(
    vehicle_id: uuid.UUID,
    schedule_id: uuid.UUID,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
    body: MaintenanceServiced | None = None,
):
    vehicle, schedule = await service.service_schedule(
        session, redis, user, vehicle_id, schedule_id, body or MaintenanceServiced()
    )
    return (await service.to_out(session, redis, vehicle, [schedule]))[0]
