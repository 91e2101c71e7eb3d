"""HTTP routes of /devices/{id}/commands, and the internal ones for tracker adapters."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from fleet_common.auth import CurrentUser, DispatcherUser, InternalCaller
from fleet_common.db import SessionDep
from fleet_common.errors import NotFoundError
from fleet_vehicle.commands import service
from fleet_vehicle.commands.schemas import CommandCreate, CommandOut, CommandResultIn
from fleet_vehicle.commands.transport import CommandTransport
from fleet_vehicle.dependencies import RedisDep
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page
from fleet_vehicle.models import CommandStatus


def _transport(request: Request) -> CommandTransport:
    return request.app.state.command_transport


TransportDep = Annotated[CommandTransport, Depends(_transport)]

router = APIRouter(prefix="/devices", tags=["commands"])


@router.post(
    "/{device_id}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
    description=(
        'Send a command to the device: `custom` (`{"payload": ...}`), `set_interval` '
        '(`{"interval_s": ...}`), `engine_stop`, `engine_resume`, `reboot`, '
        "`request_position`. Answered at once with the command `queued` or `sent`; follow it "
        "with `GET /devices/{id}/commands`. An offline device gets it when it comes online, "
        "until `expires_in_s`. `engine_stop` is refused (409) unless the vehicle's newest "
        "position says it stands still, or `force` is set; engine commands are audited."
    ),
)
async def create_command(
    device_id: uuid.UUID,
    body: CommandCreate,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
    transport: TransportDep,
    request: Request,
):
    settings = request.app.state.settings
    return await service.create_command(
        session,
        redis,
        transport,
        user,
        device_id,
        body,
        stopped_max_speed_kph=settings.engine_stop_max_speed_kph,
        stopped_max_age_s=settings.engine_stop_max_position_age_s,
    )


@router.get("/{device_id}/commands", response_model=Page[CommandOut])
async def list_commands(
    device_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    status_: Annotated[CommandStatus | None, Query(alias="status")] = None,
    limit: LimitQuery = 50,
    offset: OffsetQuery = 0,
):
    """The device's commands, newest first, with their status and who sent them."""
    rows, total = await service.list_commands(
        session, user.org_id, device_id, status_, limit, offset
    )
    return Page(items=rows, total=total, limit=limit, offset=offset)


internal_router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[InternalCaller])


@internal_router.get("/devices/{uid}/commands", response_model=list[CommandOut])
async def open_commands(uid: str, session: SessionDep):
    """The device's open commands, oldest first: what a tracker protocol adapter sends a
    device when it connects (it hears new ones on `fleet/{uid}/commands`)."""
    return await service.open_commands(session, uid)


@internal_router.post("/devices/{uid}/commands/result", response_model=CommandOut)
async def command_result(uid: str, body: CommandResultIn, session: SessionDep, redis: RedisDep):
    """A device's answer, posted by the tracker protocol adapter that heard it."""
    command = await service.record_result(session, redis, uid, body)
    if command is None:
        raise NotFoundError("no open command of this device has this id")
    return command
