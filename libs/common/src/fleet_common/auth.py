"""Access-token verification against the auth service's JWKS, shared by every service.

Every service verifies tokens itself (the gateway checking first is not enough). Only
asymmetric algorithms are accepted and the algorithm is taken from the key, never from the
token header, which rules out `alg: none` and HS256-with-the-public-key confusion.

Revocation: a signed token is also refused once the auth service revoked it (sign-out) or
every token of its user issued until then (deactivation, role or password change). The
auth service writes that to one Redis hash per user (`revocation_key`) and announces it on
`REVOCATIONS_CHANNEL`; every verifier reads the hash at most once per `cache_ttl_s` (1 s)
per user, so a revocation takes effect everywhere within about a second (at once in the
gateway, which also listens to the channel). The hash expires when the newest token it can
concern has (access tokens live 15 minutes), so it never grows past a user's recent sign-outs.
"""

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import httpx
import jwt
from fastapi import Depends, Header, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError
from fleet_common.logging import get_logger

log = get_logger(__name__)

ALLOWED_ALGORITHMS = ("EdDSA", "RS256")
REQUIRED_CLAIMS = ("sub", "org", "role", "exp", "iat", "jti", "iss")
REVOCATIONS_CHANNEL = "fleet:revocations"
# Field of a user's revocation hash: tokens issued at or before this time (ms) are revoked.
REVOKED_BEFORE_FIELD = "before_ms"
REVOKED_TOKEN_PREFIX = "jti:"  # noqa: S105 - a field name: one per signed-out token


def revocation_key(user_id: UUID | str) -> str:
    """The user's revocation hash (hash-tagged: one slot per user on Redis Cluster)."""
    return f"fleet:revoked:{{{user_id}}}"


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
    # `iat_ms` (milliseconds; `iat` alone is too coarse: a token issued a moment after a
    # revocation must not fall in the same second as it and be refused with the old ones).
    issued_at_ms: int = 0

    def can(self, role: Role) -> bool:
        return self.role.rank >= role.rank


@dataclass(frozen=True, slots=True)
class _Revoked:
    before_ms: int
    token_ids: frozenset[str]
    read_at: float


class RevocationList:
    """The auth service's revocations, read from Redis and kept here for `cache_ttl_s`.

    Fails open: while Redis is unreachable the last state read is used (or none), since the
    signature and expiry still hold and a 15-minute token is the worst case; for a few
    seconds after a failure Redis is not asked, so an outage adds no timeout per request.
    """

    def __init__(self, redis: Redis, *, cache_ttl_s: float = 1.0, max_users: int = 100_000) -> None:
        self.redis = redis
        self.cache_ttl_s = cache_ttl_s
        self.max_users = max_users
        self._users: OrderedDict[UUID, _Revoked] = OrderedDict()
        self._reads: dict[UUID, asyncio.Future[_Revoked | None]] = {}
        self._skip_until = 0.0

    async def is_revoked(self, principal: Principal) -> bool:
        state = self._users.get(principal.user_id)
        if state is None or time.monotonic() - state.read_at > self.cache_ttl_s:
            state = await self._read(principal.user_id) or state
        if state is None:
            return False
        return principal.issued_at_ms <= state.before_ms or principal.token_id in state.token_ids

    def forget(self, user_id: UUID) -> None:
        """Drop the cached state: the next check reads Redis (a revocation was announced)."""
        self._users.pop(user_id, None)

    def clear(self) -> None:
        self._users.clear()

    async def _read(self, user_id: UUID) -> _Revoked | None:
        # One read per user at a time, however many requests of theirs wait for it.
        read = self._reads.get(user_id)
        if read is None:
            read = asyncio.ensure_future(self._fetch(user_id))
            self._reads[user_id] = read
            read.add_done_callback(lambda _f: self._reads.pop(user_id, None))
        return await asyncio.shield(read)

    async def _fetch(self, user_id: UUID) -> _Revoked | None:
        now = time.monotonic()
        if now < self._skip_until:
            return None
        try:
            fields = await self.redis.hgetall(revocation_key(user_id))
        except (RedisError, OSError) as exc:
            self._skip_until = now + 5.0
            log.warning("revocations unavailable: Redis unreachable", error=str(exc))
            return None
        before_ms = 0
        token_ids = set()
        for name, value in fields.items():
            name = name.decode() if isinstance(name, bytes) else name
            if name == REVOKED_BEFORE_FIELD:
                before_ms = int(value)
            elif name.startswith(REVOKED_TOKEN_PREFIX):
                token_ids.add(name.removeprefix(REVOKED_TOKEN_PREFIX))
        state = _Revoked(before_ms, frozenset(token_ids), now)
        self._users[user_id] = state
        self._users.move_to_end(user_id)
        if len(self._users) > self.max_users:
            self._users.popitem(last=False)
        return state


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
    def __init__(
        self, jwks: JWKSCache, issuer: str, revocations: RevocationList | None = None
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.revocations = revocations

    async def verify(self, token: str) -> Principal:
        """The token's principal: signed by a published key, unexpired, not revoked."""
        principal = await self.decode(token)
        if self.revocations is not None and await self.revocations.is_revoked(principal):
            raise UnauthorizedError("token has been revoked")
        return principal

    async def decode(self, token: str) -> Principal:
        """Check the signature and claims (not revocation)."""
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
                issued_at_ms=int(claims.get("iat_ms") or int(claims["iat"]) * 1000),
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
