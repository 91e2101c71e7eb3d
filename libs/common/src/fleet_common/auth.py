"""Access-token verification against the auth service's JWKS, shared by every service.

Every service verifies tokens itself (the gateway checking first is not enough). Only
asymmetric algorithms are accepted and the algorithm is taken from the key, never from the
token header, which rules out `alg: none` and HS256-with-the-public-key confusion.
"""

import asyncio
import hmac
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import httpx
import jwt
from fastapi import Depends, Header, Request

from fleet_common.errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError
from fleet_common.logging import get_logger

log = get_logger(__name__)

ALLOWED_ALGORITHMS = ("EdDSA", "RS256")
REQUIRED_CLAIMS = ("sub", "org", "role", "exp", "iat", "jti", "iss")


class Role(StrEnum):
    viewer = "viewer"
    dispatcher = "dispatcher"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.viewer: 0, Role.dispatcher: 1, Role.admin: 2}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: UUID
    org_id: UUID
    role: Role
    token_id: str
    expires_at: int

    def can(self, role: Role) -> bool:
        return self.role.rank >= role.rank


class JWKSCache:
    """The auth service's public keys; an unknown `kid` refetches, at most every few seconds."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        min_refresh_interval_s: float = 5.0,
        max_age_s: float = 600.0,
    ) -> None:
        self.url = url
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._min_refresh_interval_s = min_refresh_interval_s
        self._max_age_s = max_age_s
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        response = await self._client.get(self.url)
        response.raise_for_status()
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in response.json().get("keys", []):
            kid = jwk.get("kid")
            if not kid or jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[kid] = jwt.PyJWK.from_dict(jwk)
            except jwt.PyJWTError:
                log.warning("ignoring unusable JWK", kid=kid)
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def get(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        stale = now - self._fetched_at > self._max_age_s
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            if kid in self._keys and now - self._fetched_at <= self._max_age_s:
                return self._keys[kid]
            if now - self._fetched_at >= self._min_refresh_interval_s:
                try:
                    await self._refresh()
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("JWKS fetch failed", url=self.url, error=str(exc))
                    if not self._keys:
                        raise ServiceUnavailableError(
                            "cannot reach the auth service's JWKS"
                        ) from exc
            return self._keys.get(kid)


class TokenVerifier:
    def __init__(self, jwks: JWKSCache, issuer: str) -> None:
        self.jwks = jwks
        self.issuer = issuer

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise UnauthorizedError("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALLOWED_ALGORITHMS:
            raise UnauthorizedError("token is not signed with an accepted key")
        key = await self.jwks.get(kid)
        if key is None or key.algorithm_name not in ALLOWED_ALGORITHMS:
            raise UnauthorizedError("token is signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                issuer=self.issuer,
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False},
                leeway=5,
            )
            return Principal(
                user_id=UUID(claims["sub"]),
                org_id=UUID(claims["org"]),
                role=Role(claims["role"]),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("token has expired") from exc
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise UnauthorizedError("invalid token") from exc


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError()
    return token.strip()


async def current_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(bearer_token(authorization))


def require_role(role: Role):
    """A dependency that admits callers with at least `role`."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.can(role):
            raise ForbiddenError(f"this action needs the {role.value} role")
        return principal

    return dependency


CurrentUser = Annotated[Principal, Depends(current_principal)]
DispatcherUser = Annotated[Principal, Depends(require_role(Role.dispatcher))]
AdminUser = Annotated[Principal, Depends(require_role(Role.admin))]

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 - a header name, not a secret


async def require_internal_caller(
    request: Request, x_internal_token: Annotated[str | None, Header()] = None
) -> None:
    """Admit only other Fleet Tracker services (routes the gateway never exposes)."""
    expected = request.app.state.settings.internal_token.get_secret_value().encode()
    if not x_internal_token or not hmac.compare_digest(x_internal_token.encode(), expected):
        raise ForbiddenError("internal endpoint")


InternalCaller = Depends(require_internal_caller)
