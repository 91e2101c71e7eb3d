"""User management inside one organization. Every query is scoped by the caller's org."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_auth.models import Organization, User
from fleet_auth.passwords import check_password_policy, hash_password
from fleet_auth.revocation import Revoker
from fleet_auth.sessions.tokens import revoke_user_tokens
from fleet_auth.users.schemas import UserCreate, UserUpdate
from fleet_common.errors import ConflictError, NotFoundError


async def list_users(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    limit: int,
    offset: int,
    role: str | None,
    is_active: bool | None,
) -> tuple[list[User], int]:
    query = select(User).where(User.org_id == org_id)
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(User.created_at, User.id).limit(limit).offset(offset)
    rows = await session.scalars(page)
    return list(rows), total or 0


async def list_directory(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[User], int]:
    """Active users only, by name: the people a dispatcher may pick as alert recipients now."""
    query = select(User).where(User.org_id == org_id, User.is_active.is_(True))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(User.full_name, User.email, User.id).limit(limit).offset(offset)
    rows = await session.scalars(page)
    return list(rows), total or 0


async def get_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    # Another org's user is reported exactly like a missing one.
    if user is None or user.org_id != org_id:
        raise NotFoundError("user not found")
    return user


async def create_user(session: AsyncSession, org_id: uuid.UUID, body: UserCreate) -> User:
    email = body.email.lower()
    check_password_policy(body.password, email=email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise ConflictError("an account with this email already exists")
    user = User(
        org_id=org_id,
        email=email,
        full_name=body.full_name,
        role=body.role,
        password_hash=hash_password(body.password),
        is_active=True,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise ConflictError("an account with this email already exists") from exc
    await session.refresh(user)
    return user


async def _ensure_another_admin(session: AsyncSession, user: User) -> None:
    """Refuse to take away the org's last active admin.

    The org row is locked first, so two admins demoting each other at once cannot both pass.
    """
    await session.execute(
        select(Organization.id).where(Organization.id == user.org_id).with_for_update()
    )
    others = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.org_id == user.org_id,
            User.role == "admin",
            User.is_active.is_(True),
            User.id != user.id,
        )
    )
    if not others:
        raise ConflictError("an organization needs at least one active admin")


async def update_user(
    session: AsyncSession,
    revoker: Revoker,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    body: UserUpdate,
) -> User:
    user = await get_user(session, org_id, user_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    loses_admin = (
        user.role == "admin"
        and user.is_active
        and (changes.get("role", "admin") != "admin" or changes.get("is_active", True) is False)
    )
    if loses_admin:
        await _ensure_another_admin(session, user)
    # Each of these ends the user's access tokens at once (tokens carry the role: the next
    # refresh or sign-in gives one with the new role).
    revoked_by = [
        reason
        for reason, changed in (
            ("password_changed", "password" in changes),
            ("deactivated", user.is_active and changes.get("is_active") is False),
            ("role_changed", changes.get("role", user.role) != user.role),
        )
        if changed
    ]
    if "password" in changes:
        check_password_policy(changes["password"], email=user.email)
        user.password_hash = hash_password(changes.pop("password"))
        await revoke_user_tokens(session, user.id)
    if changes.get("is_active") is False:
        await revoke_user_tokens(session, user.id)
    if revoked_by:
        await revoker.revoke_user(user.id, ",".join(revoked_by))
    for name, value in changes.items():
        setattr(user, name, value)
    await session.commit()
    await session.refresh(user)
    return user


async def delete_user(
    session: AsyncSession, revoker: Revoker, org_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    user = await get_user(session, org_id, user_id)
    if user.role == "admin" and user.is_active:
        await _ensure_another_admin(session, user)
    await revoker.revoke_user(user.id, "deleted")
    await session.delete(user)
    await session.commit()
