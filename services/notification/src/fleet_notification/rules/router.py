"""`/api/v1/alert-rules`: read for every role, write for dispatchers and admins."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_notification.rules import service
from fleet_notification.rules.schemas import (
    AlertRuleCreate,
    AlertRuleList,
    AlertRuleOut,
    AlertRuleUpdate,
)

router = APIRouter(prefix="/alert-rules", tags=["alert rules"])


@router.get("")
async def list_rules(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    vehicle_group: Annotated[str | None, Query(min_length=1, max_length=60)] = None,
    vehicle_id: UUID | None = None,
) -> AlertRuleList:
    """Rules of the org; `vehicle_group` / `vehicle_id` keep those naming that group or
    vehicle."""
    rows, total = await service.list_rules(
        session,
        user.org_id,
        limit=limit,
        offset=offset,
        vehicle_group=vehicle_group,
        vehicle_id=vehicle_id,
    )
    return AlertRuleList(
        items=[service.to_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_rule(
    body: AlertRuleCreate, user: DispatcherUser, session: SessionDep, request: Request
) -> AlertRuleOut:
    rule = await service.create_rule(session, user.org_id, body, request.app.state.settings)
    return service.to_out(rule)


@router.get("/{rule_id}")
async def get_rule(rule_id: UUID, user: CurrentUser, session: SessionDep) -> AlertRuleOut:
    return service.to_out(await service.get_rule(session, user.org_id, rule_id))


@router.patch("/{rule_id}")
async def update_rule(
    rule_id: UUID,
    body: AlertRuleUpdate,
    user: DispatcherUser,
    session: SessionDep,
    request: Request,
) -> AlertRuleOut:
    rule = await service.update_rule(
        session, user.org_id, rule_id, body, request.app.state.settings
    )
    return service.to_out(rule)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: UUID, user: DispatcherUser, session: SessionDep) -> Response:
    await service.delete_rule(session, user.org_id, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
