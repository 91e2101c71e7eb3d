"""Dead-lettered events: an org's admins see their org's; operators see all, internally.

`GET /api/v1/event-dead-letters` (admin): entries whose event belongs to the caller's org.
`GET /internal/event-dead-letters` (internal credential, never routed by the gateway): every
entry, including those that could not be read as an event of any org.
"""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from fleet_common.auth import AdminUser, InternalCaller
from fleet_common.db import SessionDep
from fleet_notification.dead_letters import service
from fleet_notification.dead_letters.service import DeadLetterList

router = APIRouter(prefix="/event-dead-letters", tags=["event dead letters"])
internal_router = APIRouter(
    prefix="/internal/event-dead-letters", tags=["internal"], dependencies=[InternalCaller]
)

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("")
async def list_org_dead_letters(
    user: AdminUser, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> DeadLetterList:
    rows, total = await service.list_dead_letters(
        session, org_id=user.org_id, limit=limit, offset=offset
    )
    return DeadLetterList(
        items=[service.to_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@internal_router.get("")
async def list_all_dead_letters(
    session: SessionDep,
    org_id: UUID | None = None,
    unowned: bool = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeadLetterList:
    """Every org's entries (or `org_id`'s); `unowned=true`: those of no known org only."""
    rows, total = await service.list_dead_letters(
        session, org_id=org_id, unowned_only=unowned, limit=limit, offset=offset
    )
    return DeadLetterList(
        items=[service.to_out(r) for r in rows], total=total, limit=limit, offset=offset
    )
