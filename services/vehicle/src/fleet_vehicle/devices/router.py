"""HTTP routes of /devices."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_vehicle.dependencies import BrokerAddressDep, BrokerDep, RedisDep
from fleet_vehicle.devices import service
from fleet_vehicle.devices.schemas import (
    BrokerCredentials,
    DeviceCreate,
    DeviceOut,
    DeviceUpdate,
    DeviceWithCredentials,
)
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page, sort_pattern
from fleet_vehicle.models import DeviceProtocol
from fleet_vehicle.validation import text_field
from fleet_vehicle.vehicles.schemas import DeviceAssignmentOut

router = APIRouter(prefix="/devices", tags=["devices"])

SortQuery = Annotated[
    str,
    Query(
        pattern=sort_pattern(list(service.SORT_COLUMNS)),
        description="A field, `-field` for descending: " + ", ".join(service.SORT_COLUMNS),
    ),
]


@router.get("", response_model=Page[DeviceOut])
async def list_devices(
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    sort: SortQuery = "name",
    q: Annotated[text_field(100) | None, Query(description="Search in name and uid")] = None,
    protocol: DeviceProtocol | None = None,
    vehicle_id: uuid.UUID | None = None,
    active: bool | None = None,
    include_archived: bool = False,
):
    rows, total = await service.list_devices(
        session,
        user.org_id,
        q=q,
        protocol=protocol,
        vehicle_id=vehicle_id,
        active=active,
        include_archived=include_archived,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    items = await service.to_out(redis, user.org_id, rows)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "",
    response_model=DeviceWithCredentials,
    status_code=status.HTTP_201_CREATED,
    description=(
        "Register a device and create its MQTT broker client. The response carries the "
        "broker credentials and the HTTP key once: neither is stored and neither can be read "
        "again (rotate them with `POST /devices/{id}/credentials`). The device may publish "
        "only to `fleet/{uid}/#` and `owntracks/{uid}/#` and subscribe only to "
        "`fleet/{uid}/commands`; HTTP (OsmAnd) positions must carry `key=<http_key>`. "
        "A `teltonika` or `gt06` tracker gets no credentials (`credentials` is null): it "
        "connects over TCP to the location service and is known by its IMEI (the uid)."
    ),
)
async def create_device(
    body: DeviceCreate,
    user: DispatcherUser,
    session: SessionDep,
    broker: BrokerDep,
    redis: RedisDep,
    address: BrokerAddressDep,
):
    device, credentials = await service.create_device(session, broker, redis, address, user, body)
    (out,) = await service.to_out(redis, user.org_id, [device])
    return DeviceWithCredentials(
        **out.model_dump(),
        credentials=BrokerCredentials(**credentials.__dict__) if credentials else None,
    )


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(
    device_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    device = await service.get_device(
        session, user.org_id, device_id, include_archived=include_archived
    )
    return (await service.to_out(redis, user.org_id, [device]))[0]


@router.patch("/{device_id}", response_model=DeviceOut)
async def update_device(
    device_id: uuid.UUID,
    body: DeviceUpdate,
    user: DispatcherUser,
    session: SessionDep,
    broker: BrokerDep,
    redis: RedisDep,
):
    device = await service.update_device(session, broker, redis, user, device_id, body)
    return (await service.to_out(redis, user.org_id, [device]))[0]


@router.delete(
    "/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    description=(
        "Revoke the device at the broker at once (a connected device is disconnected and "
        "cannot reconnect) and delete it: 404 from then on and out of the lists; its row and "
        "history are kept, archived (`include_archived=true` shows them), and its uid may be "
        "registered again."
    ),
)
async def delete_device(
    device_id: uuid.UUID,
    user: DispatcherUser,
    session: SessionDep,
    broker: BrokerDep,
    redis: RedisDep,
) -> None:
    await service.archive_device(session, broker, redis, user, device_id)


@router.post(
    "/{device_id}/credentials",
    response_model=BrokerCredentials,
    description=(
        "Rotate the device's broker password and HTTP key: the old ones stop working at once "
        "and connections made with the old password are closed. The new ones are shown once."
    ),
)
async def rotate_credentials(
    device_id: uuid.UUID,
    user: DispatcherUser,
    session: SessionDep,
    broker: BrokerDep,
    redis: RedisDep,
    address: BrokerAddressDep,
):
    credentials = await service.rotate_credentials(session, broker, redis, address, user, device_id)
    return BrokerCredentials(**credentials.__dict__)


@router.get("/{device_id}/assignments", response_model=Page[DeviceAssignmentOut])
async def device_assignments(
    device_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
    include_archived: Annotated[
        bool, Query(description="Also a deleted (archived) one, for history")
    ] = False,
):
    """Which vehicles this device was fitted to and when, newest first."""
    rows, total = await service.assignment_history(
        session, user.org_id, device_id, limit, offset, include_archived
    )
    return Page(items=rows, total=total, limit=limit, offset=offset)
