"""HTTP routes of /devices/{id}/commands."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_vehicle.commands import service
from fleet_vehicle.commands.schemas import CommandCreate, CommandOut
from fleet_vehicle.dependencies import RedisDep
from fleet_vehicle.listing import LimitQuery, OffsetQuery, Page
from fleet_vehicle.models import CommandStatus


def _downlink(request: Request) -> service.Downlink:
    return request.app.state.downlink


DownlinkDep = Annotated[service.Downlink, Depends(_downlink)]

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
        "position says it stands still, or `force` is set; engine commands are audited. "
        "A hardware tracker (`teltonika`, `gt06`) takes `engine_stop`, `engine_resume`, "
        "`request_position`, `reboot` and `custom` (printable ASCII): another type is "
        "refused (409)."
    ),
)
async def create_command(
    device_id: uuid.UUID,
    body: CommandCreate,
    user: DispatcherUser,
    session: SessionDep,
    redis: RedisDep,
    downlink: DownlinkDep,
    request: Request,
):
    settings = request.app.state.settings
    return await service.create_command(
        session,
        redis,
        downlink,
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
