"""`/api/v1/push-tokens`: each user registers, lists and removes their own devices' tokens."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from fleet_common.auth import CurrentUser
from fleet_common.db import SessionDep
from fleet_common.errors import NotFoundError
from fleet_notification.models import PushToken

router = APIRouter(prefix="/push-tokens", tags=["push tokens"])

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:\-.]{16,4096}$")]


class PushTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Token
    platform: Literal["android", "ios", "web"] | None = None


class PushTokenOut(BaseModel):
    id: UUID
    platform: str | None
    created_at: datetime


@router.post("", status_code=status.HTTP_201_CREATED)
async def register_push_token(
    body: PushTokenIn, user: CurrentUser, session: SessionDep
) -> PushTokenOut:
    # A device's token belongs to whoever signed in on it last.
    stmt = (
        insert(PushToken)
        .values(org_id=user.org_id, user_id=user.user_id, token=body.token, platform=body.platform)
        .on_conflict_do_update(
            index_elements=[PushToken.token],
            set_={"org_id": user.org_id, "user_id": user.user_id, "platform": body.platform},
        )
        .returning(PushToken.id, PushToken.platform, PushToken.created_at)
    )
    row = (await session.execute(stmt)).one()
    await session.commit()
    return PushTokenOut(id=row.id, platform=row.platform, created_at=row.created_at)


@router.get("")
async def list_push_tokens(user: CurrentUser, session: SessionDep) -> list[PushTokenOut]:
    rows = await session.scalars(
        select(PushToken)
        .where(PushToken.org_id == user.org_id, PushToken.user_id == user.user_id)
        .order_by(PushToken.created_at)
    )
    return [PushTokenOut(id=t.id, platform=t.platform, created_at=t.created_at) for t in rows]


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_push_token(token_id: UUID, user: CurrentUser, session: SessionDep) -> Response:
    result = await session.execute(
        delete(PushToken).where(
            PushToken.id == token_id,
            PushToken.org_id == user.org_id,
            PushToken.user_id == user.user_id,
        )
    )
    await session.commit()
    if result.rowcount == 0:
        raise NotFoundError("push token not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
