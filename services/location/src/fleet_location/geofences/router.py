"""`/api/v1/geofences`: read for every role, write for dispatchers and admins."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from fleet_common.auth import CurrentUser, DispatcherUser
from fleet_common.db import SessionDep
from fleet_location.geofences import service
from fleet_location.geofences.schemas import (
    GeofenceCreate,
    GeofenceList,
    GeofenceOut,
    GeofenceUpdate,
)

router = APIRouter(prefix="/geofences", tags=["geofences"])


async def _changed(request: Request, org_id: UUID) -> None:
    # This replica rebuilds at once; the others when the Redis notice reaches them.
    index = getattr(request.app.state, "geofence_index", None)
    if index is not None:
        index.invalidate(org_id)
    await service.publish_geofences_changed(request.app.state.redis, org_id)


@router.get("")
async def list_geofences(
    user: CurrentUser,
    session: SessionDep,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> GeofenceList:
    rows, total = await service.list_geofences(
        session, user.org_id, active=active, limit=limit, offset=offset
    )
    return GeofenceList(
        items=[service.to_out(g) for g in rows], total=total, limit=limit, offset=offset
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_geofence(
    body: GeofenceCreate, user: DispatcherUser, session: SessionDep, request: Request
) -> GeofenceOut:
    geofence = await service.create_geofence(session, user.org_id, body)
    await _changed(request, user.org_id)
    return service.to_out(geofence)


@router.get("/{geofence_id}")
async def get_geofence(geofence_id: UUID, user: CurrentUser, session: SessionDep) -> GeofenceOut:
    return service.to_out(await service.get_geofence(session, user.org_id, geofence_id))


@router.patch("/{geofence_id}")
async def update_geofence(
    geofence_id: UUID,
    body: GeofenceUpdate,
    user: DispatcherUser,
    session: SessionDep,
    request: Request,
) -> GeofenceOut:
    geofence = await service.update_geofence(session, user.org_id, geofence_id, body)
    await _changed(request, user.org_id)
    return service.to_out(geofence)


@router.delete("/{geofence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_geofence(
    geofence_id: UUID, user: DispatcherUser, session: SessionDep, request: Request
) -> Response:
    await service.delete_geofence(session, user.org_id, geofence_id)
    await _changed(request, user.org_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
