"""Service-to-service lookups (never routed by the gateway; need the internal credential).

The location service maps a device uid to its device, vehicle, org, speed limit and vehicle
group with these (the group goes on its events, for alert rules that target groups), plus
the vehicle's entered meters and maintenance due points (for `maintenance_due`), and drops
its cached entries on `fleet:devices` messages.
"""

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.auth import InternalCaller
from fleet_common.db import SessionDep
from fleet_common.errors import NotFoundError
from fleet_vehicle.maintenance.service import due_points
from fleet_vehicle.models import Device, DeviceProtocol, MaintenanceMeter, Vehicle
from fleet_vehicle.validation import DEVICE_UID_PATTERN

router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[InternalCaller])

_UID = re.compile(DEVICE_UID_PATTERN)


class MaintenanceDuePoint(BaseModel):
    id: uuid.UUID
    name: str
    meter: MaintenanceMeter
    next_due: float


class DeviceLookup(BaseModel):
    device_id: uuid.UUID
    uid: str
    vehicle_id: uuid.UUID | None
    org_id: uuid.UUID
    speed_limit_kph: float | None
    vehicle_group: str | None
    protocol: DeviceProtocol
    active: bool
    http_key_sha256: str | None
    http_key_required: bool
    # The vehicle's meters as last entered: the location service counts on from them.
    odometer_km: float | None
    engine_hours: float | None
    maintenance: list[MaintenanceDuePoint]


class DeviceLookupPage(BaseModel):
    items: list[DeviceLookup]
    next_after: str | None


def _lookup_query() -> Select:
    # An archived vehicle has no devices (archiving unassigns them), so the join needs no
    # archived check of its own.
    return (
        select(
            Device.id,
            Device.uid,
            Device.vehicle_id,
            Device.org_id,
            Vehicle.speed_limit_kph,
            Vehicle.group.label("vehicle_group"),
            Device.protocol,
            Device.active,
            Device.http_key_hash,
            Device.http_key_required,
            Vehicle.odometer_km,
            Vehicle.engine_hours,
        )
        .outerjoin(Vehicle, Vehicle.id == Device.vehicle_id)
        .where(Device.archived_at.is_(None))
    )


async def _to_lookups(session: AsyncSession, rows) -> list[DeviceLookup]:
    schedules = await due_points(session, list({r.vehicle_id for r in rows if r.vehicle_id}))
    return [_to_lookup(row, schedules.get(row.vehicle_id, [])) for row in rows]


def _to_lookup(row, schedules) -> DeviceLookup:
    return DeviceLookup(
        device_id=row.id,
        uid=row.uid,
        vehicle_id=row.vehicle_id,
        org_id=row.org_id,
        speed_limit_kph=row.speed_limit_kph,
        vehicle_group=row.vehicle_group,
        protocol=row.protocol,
        active=row.active,
        http_key_sha256=row.http_key_hash,
        http_key_required=row.http_key_required,
        odometer_km=row.odometer_km,
        engine_hours=row.engine_hours,
        maintenance=[
            MaintenanceDuePoint(id=s.id, name=s.name, meter=s.meter, next_due=s.next_due)
            for s in schedules
        ],
    )


async def _lookup(session: AsyncSession, uid: str) -> DeviceLookup | None:
    row = (await session.execute(_lookup_query().where(Device.uid == uid))).first()
    return (await _to_lookups(session, [row]))[0] if row else None


@router.get("/devices/{uid}", response_model=DeviceLookup)
async def device_by_uid(uid: str, session: SessionDep) -> DeviceLookup:
    """The registered (not archived) device with this uid, active or not."""
    found = await _lookup(session, uid) if _UID.match(uid) else None
    if found is None:
        raise NotFoundError("no device has this uid")
    return found


@router.get("/devices", response_model=DeviceLookupPage)
async def active_devices(
    session: SessionDep,
    after: Annotated[str | None, Query(pattern=DEVICE_UID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> DeviceLookupPage:
    """Active devices in uid order, a page at a time (`next_after` until null): the location
    service's cache warm-up."""
    stmt = _lookup_query().where(Device.active.is_(True)).order_by(Device.uid).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Device.uid > after)
    rows = (await session.execute(stmt)).all()
    items = await _to_lookups(session, rows[:limit])
    return DeviceLookupPage(items=items, next_after=items[-1].uid if len(rows) > limit else None)
