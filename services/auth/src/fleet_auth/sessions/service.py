"""Sign-up, sign-in and session functions; they take a session and commit themselves."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_auth.config import Settings
from fleet_auth.keys import KeyRing
from fleet_auth.models import Organization, User
from fleet_auth.passwords import (
    DUMMY_HASH,
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from fleet_auth.revocation import Revoker
from fleet_auth.schemas import OrgOut, UserOut
from fleet_auth.sessions import tokens
from fleet_auth.sessions.schemas import TokenOut
from fleet_common.auth import Principal
from fleet_common.errors import ConflictError, ForbiddenError, UnauthorizedError


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def _token_response(
    session: AsyncSession, user: User, refresh_token: str, keys: KeyRing, settings: Settings
) -> TokenOut:
    org = await session.get(Organization, user.org_id)
    access_token = tokens.mint_access_token(
        user, keys.current, issuer=settings.jwt_issuer, ttl_s=settings.access_token_ttl_s
    )
    return TokenOut(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_s,
        user=UserOut.model_validate(user),
        org=OrgOut.model_validate(org),
    )


async def sign_in(session: AsyncSession, user: User, keys: KeyRing, settings: Settings) -> TokenOut:
    """Start a new session (a new refresh-token family) for `user`."""
    user.last_login_at = datetime.now(UTC)
    refresh_token = await tokens.issue_refresh_token(
        session, user.id, ttl_s=settings.refresh_token_ttl_s
    )
    await session.commit()
    return await _token_response(session, user, refresh_token, keys, settings)


async def register(
    session: AsyncSession,
    *,
    org_name: str,
    email: str,
    password: str,
    full_name: str,
    keys: KeyRing,
    settings: Settings,
) -> TokenOut:
    if not settings.allow_registration:
        raise ForbiddenError("registration is closed on this deployment; ask an admin")
    email = email.lower()
    check_password_policy(password, email=email)
    if await user_by_email(session, email) is not None:
        raise ConflictError("an account with this email already exists")
    org = Organization(name=org_name)
    session.add(org)
    await session.flush()
    user = User(
        org_id=org.id,
        email=email,
        full_name=full_name,
        role="admin",
        password_hash=hash_password(password),
        is_active=True,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise ConflictError("an account with this email already exists") from exc
    await session.refresh(user)
    return await sign_in(session, user, keys, settings)


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The active-or-not user whose password matches, else None (in constant-ish time)."""
    user = await user_by_email(session, email)
    if user is None:
        verify_password(DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


async def refresh(
    session: AsyncSession, refresh_token: str, keys: KeyRing, settings: Settings
) -> TokenOut:
    user, new_token = await tokens.rotate_refresh_token(
        session, refresh_token, ttl_s=settings.refresh_token_ttl_s
    )
    await session.commit()
    return await _token_response(session, user, new_token, keys, settings)


async def logout(
    session: AsyncSession, revoker: Revoker, principal: Principal, refresh_token: str | None
) -> None:
    if refresh_token is None:
        await tokens.revoke_user_tokens(session, principal.user_id)
        await revoker.revoke_user(principal.user_id, "logout_everywhere")
    else:
        stored = await tokens.find_refresh_token(session, refresh_token)
        if stored is None or stored.user_id != principal.user_id:
            raise UnauthorizedError("unknown refresh token")
        await tokens.revoke_family(session, stored.family_id)
        await revoker.revoke_token(principal, "logout")
    await session.commit()


async def active_user(session: AsyncSession, user_id, org_id) -> User:
    user = await session.get(User, user_id)
    if user is None or user.org_id != org_id or not user.is_active:
        raise UnauthorizedError("the account no longer exists or is disabled")
    return user
