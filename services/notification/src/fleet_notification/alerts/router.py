"""`/api/v1/alerts`: list and read for every role; acknowledge and resolve for dispatchers."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_common.errors import UnprocessableError
from fleet_notification.alerts import service
from fleet_notification.alerts.schemas import AlertList, AlertOut, AlertStatus
from fleet_notification.events import EventType

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("")
async def list_alerts(
    user: CurrentUser,
    session: SessionDep,
    status: AlertStatus | None = None,
    type: EventType | None = None,
    vehicle_id: UUID | None = None,
    vehicle_group: Annotated[str | None, Query(min_length=1, max_length=60)] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlertList:
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise UnprocessableError(f"{name} needs a timezone (e.g. Z)", field=name)
    if from_ and to and from_ > to:
        raise UnprocessableError("from must not be after to", field="from")
    rows, total = await service.list_alerts(
        session,
        user.org_id,
        status=status,
        type_=type,
        vehicle_id=vehicle_id,
        vehicle_group=vehicle_group,
        from_=from_,
        to=to,
        limit=limit,
        offset=offset,
    )
    return AlertList(
        items=[service.to_out(a) for a in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{alert_id}")
async def get_alert(alert_id: UUID, user: CurrentUser, session: SessionDep) -> AlertOut:
    alert = await service.get_alert(session, user.org_id, alert_id)
    return service.to_out(alert, await service.deliveries_of(session, alert.id))


@router.post("/{alert_id}/ack")
async def acknowledge_alert(alert_id: UUID, user: DispatcherUser, session: SessionDep) -> AlertOut:
    return service.to_out(await service.acknowledge(session, user.org_id, alert_id, user.user_id))


@router.post("/{alert_id}/resolve")
async def resolve_alert(alert_id: UUID, user: DispatcherUser, session: SessionDep) -> AlertOut:
    return service.to_out(await service.resolve(session, user.org_id, alert_id, user.user_id))
