"""HTTP routes of /drivers."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_vehicle.drivers import service
from fleet_vehicle.drivers.schemas import DriverCreate, DriverOut, DriverUpdate
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page, sort_pattern
from fleet_vehicle.validation import text_field
from fleet_vehicle.vehicles.schemas import DriverAssignmentOut

router = APIRouter(prefix="/drivers", tags=["drivers"])

SortQuery = Annotated[
    str,
    Query(
        pattern=sort_pattern(list(service.SORT_COLUMNS)),
        description="A field, `-field` for descending: " + ", ".join(service.SORT_COLUMNS),
    ),
]


@router.get("", response_model=Page[DriverOut])
async def list_drivers(
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    sort: SortQuery = "name",
    q: Annotated[
        text_field(100) | None, Query(description="Search in name, licence number, phone")
    ] = None,
    include_archived: bool = False,
):
    rows, total = await service.list_drivers(
        session,
        user.org_id,
        q=q,
        include_archived=include_archived,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return Page(items=await service.to_out(session, rows), total=total, limit=limit, offset=offset)


@router.post("", response_model=DriverOut, status_code=status.HTTP_201_CREATED)
async def create_driver(body: DriverCreate, user: DispatcherUser, session: SessionDep):
    driver = await service.create_driver(session, user, body)
    return (await service.to_out(session, [driver]))[0]


@router.get("/{driver_id}", response_model=DriverOut)
async def get_driver(
    driver_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    driver = await service.get_driver(
        session, user.org_id, driver_id, include_archived=include_archived
    )
    return (await service.to_out(session, [driver]))[0]


@router.patch("/{driver_id}", response_model=DriverOut)
async def update_driver(
    driver_id: uuid.UUID, body: DriverUpdate, user: DispatcherUser, session: SessionDep
):
    driver = await service.update_driver(session, user, driver_id, body)
    return (await service.to_out(session, [driver]))[0]


@router.delete(
    "/{driver_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    description=(
        "Delete the driver: 404 from then on and out of the lists, taken out of any vehicle; "
        "the row and the history of what they drove are kept, archived "
        "(`include_archived=true` shows them)."
    ),
)
async def delete_driver(driver_id: uuid.UUID, user: DispatcherUser, session: SessionDep) -> None:
    await service.archive_driver(session, user, driver_id)


@router.get("/{driver_id}/assignments", response_model=Page[DriverAssignmentOut])
async def driver_assignments(
    driver_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    """Which vehicles this driver drove and when, newest first."""
    rows, total = await service.assignment_history(
        session, user.org_id, driver_id, limit, offset, include_archived
    )
    return Page(items=rows, total=total, limit=limit, offset=offset)
