"""HTTP routes of /vehicles."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page, sort_pattern
from fleet_vehicle.models import VehicleStatus, VehicleType
from fleet_vehicle.validation import Tag, text_field
from fleet_vehicle.vehicles import service
from fleet_vehicle.vehicles.schemas import (
    DeviceAssignmentOut,
    DriverAssignmentOut,
    DriverAssignmentRequest,
    VehicleCreate,
    VehicleOut,
    VehicleUpdate,
)

router = APIRouter(prefix="/vehicles", tags=["vehicles"])

SortQuery = Annotated[
    str,
    Query(
        pattern=sort_pattern(list(service.SORT_COLUMNS)),
        description="A field, `-field` for descending: " + ", ".join(service.SORT_COLUMNS),
    ),
]


@router.get("", response_model=Page[VehicleOut])
async def list_vehicles(
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    sort: SortQuery = "name",
    status_: Annotated[VehicleStatus | None, Query(alias="status")] = None,
    type_: Annotated[VehicleType | None, Query(alias="type")] = None,
    group: Annotated[text_field(60) | None, Query()] = None,
    tag: Annotated[Tag | None, Query()] = None,
    q: Annotated[text_field(100) | None, Query(description="Search in name and plate")] = None,
    include_archived: bool = False,
):
    filters = service.VehicleFilters(
        status=status_, type=type_, group=group, tag=tag, q=q, include_archived=include_archived
    )
    rows, total = await service.list_vehicles(session, user.org_id, filters, sort, limit, offset)
    return Page(items=await service.to_out(session, rows), total=total, limit=limit, offset=offset)


@router.post("", response_model=VehicleOut, status_code=status.HTTP_201_CREATED)
async def create_vehicle(body: VehicleCreate, user: DispatcherUser, session: SessionDep):
    vehicle = await service.create_vehicle(session, user, body)
    return (await service.to_out(session, [vehicle]))[0]


@router.get("/{vehicle_id}", response_model=VehicleOut)
async def get_vehicle(
    vehicle_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    """A vehicle; a deleted one (`archived_at` set) only with `include_archived=true`."""
    vehicle = await service.get_vehicle(
        session, user.org_id, vehicle_id, include_archived=include_archived
    )
    return (await service.to_out(session, [vehicle]))[0]


@router.patch("/{vehicle_id}", response_model=VehicleOut)
async def update_vehicle(
    vehicle_id: uuid.UUID,
    body: VehicleUpdate,
    user: DispatcherUser,
    session: SessionDep,
    request: Request,
):
    vehicle = await service.update_vehicle(session, request.app.state.redis, user, vehicle_id, body)
    return (await service.to_out(session, [vehicle]))[0]


@router.delete(
    "/{vehicle_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    description=(
        "Delete the vehicle: 404 from then on and out of the lists, its driver and devices "
        "unassigned. The row and its driver and device history are kept, archived "
        "(`include_archived=true` shows them). Its plate becomes free for a new vehicle."
    ),
)
async def delete_vehicle(
    vehicle_id: uuid.UUID, user: DispatcherUser, session: SessionDep, request: Request
) -> None:
    await service.archive_vehicle(session, request.app.state.redis, user, vehicle_id)


@router.put(
    "/{vehicle_id}/driver",
    response_model=DriverAssignmentOut | None,
    description=(
        "Put a driver in the vehicle (`driver_id`), ending the vehicle's and the driver's "
        "open assignments, or take the current driver out (`null`, answered with null)."
    ),
)
async def assign_driver(
    vehicle_id: uuid.UUID,
    body: DriverAssignmentRequest,
    user: DispatcherUser,
    session: SessionDep,
    request: Request,
):
    return await service.assign_driver(
        session, request.app.state.redis, user, vehicle_id, body.driver_id
    )


@router.get("/{vehicle_id}/driver-assignments", response_model=Page[DriverAssignmentOut])
async def driver_assignments(
    vehicle_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    """Who drove this vehicle and when, newest first."""
    rows, total = await service.driver_history(
        session, user.org_id, vehicle_id, limit, offset, include_archived
    )
    return Page(items=rows, total=total, limit=limit, offset=offset)


@router.get("/{vehicle_id}/device-assignments", response_model=Page[DeviceAssignmentOut])
async def device_assignments(
    vehicle_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    """Which devices were fitted to this vehicle and when, newest first."""
    rows, total = await service.device_history(
        session, user.org_id, vehicle_id, limit, offset, include_archived
    )
    return Page(items=rows, total=total, limit=limit, offset=offset)
