"""Service-to-service lookups (never routed by the gateway; need the internal credential).

The location service maps a device uid to its device, vehicle, org, speed limit and vehicle
group with these (the group goes on its events, for alert rules that target groups), and
drops its cached entries on `fleet:devices` messages.
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
from fleet_vehicle.models import Device, DeviceProtocol, Vehicle
from fleet_vehicle.validation import DEVICE_UID_PATTERN

router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[InternalCaller])

_UID = re.compile(DEVICE_UID_PATTERN)


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
        )
        .outerjoin(Vehicle, Vehicle.id == Device.vehicle_id)
        .where(Device.archived_at.is_(None))
    )


def _to_lookup(row) -> DeviceLookup:
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
    )


async def _lookup(session: AsyncSession, uid: str) -> DeviceLookup | None:
    row = (await session.execute(_lookup_query().where(Device.uid == uid))).first()
    return _to_lookup(row) if row else None


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
    items = [_to_lookup(row) for row in rows[:limit]]
    return DeviceLookupPage(items=items, next_after=items[-1].uid if len(rows) > limit else None)
