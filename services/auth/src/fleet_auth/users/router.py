"""`/api/v1/users`: an admin manages the users of their organization; dispatchers may read
the org's directory (who can be picked as an alert recipient)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from fleet_auth.dependencies import RevokerDep
from fleet_auth.schemas import RoleName, UserOut
from fleet_auth.users import service
from fleet_auth.users.schemas import (
    DirectoryEntry,
    DirectoryPage,
    UserCreate,
    UserPage,
    UserUpdate,
)
from fleet_common.auth import AdminUser, DispatcherUser
from fleet_common.db import SessionDep

router = APIRouter(prefix="/users", tags=["users"])


@router.get("")
async def list_users(
    admin: AdminUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    role: RoleName | None = None,
    is_active: bool | None = None,
) -> UserPage:
    users, total = await service.list_users(
        session, admin.org_id, limit=limit, offset=offset, role=role, is_active=is_active
    )
    return UserPage(
        items=[UserOut.model_validate(u) for u in users], total=total, limit=limit, offset=offset
    )


@router.get("/directory")
async def list_directory(
    caller: DispatcherUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DirectoryPage:
    """The org's active users by name: id, full name and email only, for whoever writes
    alert rules (dispatchers and admins) to pick recipients. Viewers are refused: they
    write no rules, so they have no need for their colleagues' addresses."""
    users, total = await service.list_directory(session, caller.org_id, limit=limit, offset=offset)
    return DirectoryPage(
        items=[DirectoryEntry.model_validate(u) for u in users],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, admin: AdminUser, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.create_user(session, admin.org_id, body))


@router.get("/{user_id}")
async def get_user(user_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(session, admin.org_id, user_id))


@router.patch("/{user_id}")
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    admin: AdminUser,
    session: SessionDep,
    revoker: RevokerDep,
) -> UserOut:
    """Rename, change role, (de)activate or set a password. Deactivating or changing the
    password ends every session of the user; those and a role change also end their access
    tokens at once (refused within about a second everywhere, live WebSockets closed)."""
    user = await service.update_user(session, revoker, admin.org_id, user_id, body)
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(
    user_id: uuid.UUID, admin: AdminUser, session: SessionDep, revoker: RevokerDep
) -> Response:
    await service.delete_user(session, revoker, admin.org_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
