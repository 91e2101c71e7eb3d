"""Access tokens (short-lived JWTs) and refresh tokens (opaque, hashed, rotated in families)."""

import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_auth.keys import SigningKey
from fleet_auth.models import RefreshToken, User
from fleet_common.errors import UnauthorizedError


def mint_access_token(user: User, key: SigningKey, *, issuer: str, ttl_s: int) -> str:
    now_ms = time.time_ns() // 1_000_000
    now = now_ms // 1000
    claims = {
        "sub": str(user.id),
        "org": str(user.org_id),
        "role": user.role,
        "iat": now,
        # What revocation compares with (fleet_common.auth.RevocationList): `iat` is whole
        # seconds, too coarse to tell a token issued just after a revocation from one before.
        "iat_ms": now_ms,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
        "iss": issuer,
    }
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


def hash_refresh_token(token: str) -> str:
    # The token has 256 bits of entropy, so a fast hash is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_refresh_token(
    session: AsyncSession, user_id: uuid.UUID, *, ttl_s: int, family_id: uuid.UUID | None = None
) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=hash_refresh_token(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        )
    )
    return token


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def find_refresh_token(session: AsyncSession, token: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(token))
        .with_for_update()
    )


async def rotate_refresh_token(
    session: AsyncSession, token: str, *, ttl_s: int
) -> tuple[User, str]:
    """Spend `token` and return its user and a new token of the same family.

    A token that was already spent is a sign of theft (the thief or the owner replays it):
    the whole family is revoked and committed before the 401 is raised.
    """
    stored = await find_refresh_token(session, token)
    if stored is None:
        raise UnauthorizedError("unknown refresh token")
    now = datetime.now(UTC)
    if stored.used_at is not None or stored.revoked_at is not None:
        if stored.used_at is not None:
            await revoke_family(session, stored.family_id)
            await session.commit()
        raise UnauthorizedError("refresh token has already been used or revoked")
    if stored.expires_at <= now:
        raise UnauthorizedError("refresh token has expired")
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise UnauthorizedError("the account is disabled")
    stored.used_at = now
    new_token = await issue_refresh_token(session, user.id, ttl_s=ttl_s, family_id=stored.family_id)
    return user, new_token
