"""Drivers. Every query is scoped by the caller's org."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.auth import Principal
from fleet_common.errors import NotFoundError
from fleet_vehicle.constraints import commit_or_conflict
from fleet_vehicle.drivers.schemas import DriverCreate, DriverOut, DriverUpdate
from fleet_vehicle.listing import apply_sort, escape_like, paginate
from fleet_vehicle.models import Driver, DriverAssignment

SORT_COLUMNS = {
    "name": Driver.name,
    "licence_number": Driver.licence_number,
    "licence_expiry": Driver.licence_expiry,
    "created_at": Driver.created_at,
}


async def get_driver(
    session: AsyncSession,
    org_id: uuid.UUID,
    driver_id: uuid.UUID,
    *,
    for_update: bool = False,
    include_archived: bool = False,
) -> Driver:
    """The org's driver; a deleted (archived) one only when asked for."""
    stmt = select(Driver).where(Driver.id == driver_id, Driver.org_id == org_id)
    if not include_archived:
        stmt = stmt.where(Driver.archived_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    driver = await session.scalar(stmt)
    if driver is None:
        raise NotFoundError("driver not found")
    return driver


async def to_out(session: AsyncSession, drivers: list[Driver]) -> list[DriverOut]:
    vehicles: dict[uuid.UUID, uuid.UUID] = {}
    if drivers:
        rows = await session.execute(
            select(DriverAssignment.driver_id, DriverAssignment.vehicle_id).where(
                DriverAssignment.driver_id.in_([d.id for d in drivers]),
                DriverAssignment.ended_at.is_(None),
            )
        )
        vehicles = dict(rows.all())
    return [
        DriverOut.model_validate(d).model_copy(update={"current_vehicle_id": vehicles.get(d.id)})
        for d in drivers
    ]


async def list_drivers(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    q: str | None,
    include_archived: bool,
    sort: str,
    limit: int,
    offset: int,
):
    stmt = select(Driver).where(Driver.org_id == org_id)
    if not include_archived:
        stmt = stmt.where(Driver.archived_at.is_(None))
    if q:
        pattern = f"%{escape_like(q)}%"
        stmt = stmt.where(
            or_(
                Driver.name.ilike(pattern, escape="\\"),
                Driver.licence_number.ilike(pattern, escape="\\"),
                Driver.phone.ilike(pattern, escape="\\"),
            )
        )
    stmt = apply_sort(stmt, sort, SORT_COLUMNS, Driver.id)
    rows, total = await paginate(session, stmt, limit, offset)
    return list(rows), total


async def create_driver(session: AsyncSession, principal: Principal, data: DriverCreate) -> Driver:
    driver = Driver(org_id=principal.org_id, **data.model_dump())
    session.add(driver)
    await commit_or_conflict(session)
    await session.refresh(driver)
    return driver


async def update_driver(
    session: AsyncSession, principal: Principal, driver_id: uuid.UUID, data: DriverUpdate
) -> Driver:
    driver = await get_driver(session, principal.org_id, driver_id, for_update=True)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(driver, field, value)
    await commit_or_conflict(session)
    await session.refresh(driver)
    return driver


async def archive_driver(session: AsyncSession, principal: Principal, driver_id: uuid.UUID) -> None:
    """Delete: gone for the API (404, out of lists), out of any vehicle; the row stays,
    archived, with the history of what they drove (`include_archived=true`)."""
    driver = await get_driver(session, principal.org_id, driver_id, for_update=True)
    ended = datetime.now(UTC)
    driver.archived_at = ended
    await session.execute(
        update(DriverAssignment)
        .where(DriverAssignment.driver_id == driver.id, DriverAssignment.ended_at.is_(None))
        .values(ended_at=ended)
    )
    await commit_or_conflict(session)


async def assignment_history(
    session: AsyncSession,
    org_id: uuid.UUID,
    driver_id: uuid.UUID,
    limit: int,
    offset: int,
    include_archived: bool = False,
):
    await get_driver(session, org_id, driver_id, include_archived=include_archived)
    stmt = (
        select(DriverAssignment)
        .where(DriverAssignment.driver_id == driver_id, DriverAssignment.org_id == org_id)
        .order_by(DriverAssignment.started_at.desc(), DriverAssignment.id)
    )
    return await paginate(session, stmt, limit, offset)
