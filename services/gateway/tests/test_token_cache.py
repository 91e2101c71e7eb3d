"""The gateway's cache of verified tokens: only successes, never past a token's own exp."""

import asyncio
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fleet_common.auth import JWKSCache
from fleet_common.errors import UnauthorizedError
from fleet_gateway.token_cache import CachingTokenVerifier


@pytest.fixture
async def cache_factory(auth_service):
    clients = []

    def factory(max_entries: int = 100) -> CachingTokenVerifier:
        client = httpx.AsyncClient(timeout=10)
        clients.append(client)
        return CachingTokenVerifier(
            JWKSCache(auth_service.jwks_url, client), "fleet-tracker", max_entries=max_entries
        )

    yield factory
    for client in clients:
        await client.aclose()


def _signed(auth_service, org, lifetime_s: int) -> str:
    """A token of the org's admin signed with the real key, living `lifetime_s`."""
    pem = (auth_service.keys_dir / "signing-key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    kid = httpx.get(auth_service.jwks_url, timeout=10).json()["keys"][0]["kid"]
    claims = jwt.decode(org.token("admin"), options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now, exp=now + lifetime_s, jti=uuid.uuid4().hex)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


async def test_verified_tokens_are_remembered_and_failures_are_not(
    cache_factory, make_org, bad_tokens
):
    org = make_org()
    cache = cache_factory()
    first = await cache.verify(org.token("viewer"))
    assert len(cache) == 1
    assert await cache.verify(org.token("viewer")) == first
    assert len(cache) == 1
    for kind in ("expired", "tampered", "alg_none", "unknown_kid"):
        with pytest.raises(UnauthorizedError):
            await cache.verify(bad_tokens(org)[kind])
    assert len(cache) == 1


async def test_a_remembered_token_is_not_served_past_its_exp(cache_factory, auth_service, make_org):
    org = make_org()
    cache = cache_factory()
    token = _signed(auth_service, org, lifetime_s=1)
    principal = await cache.verify(token)
    assert len(cache) == 1
    await asyncio.sleep(max(0.0, principal.expires_at - time.time()) + 0.1)
    # Past exp the cache steps aside; the verifier's own 5 s leeway still decides, and a
    # token that only the leeway lets through is not remembered again.
    await cache.verify(token)
    assert len(cache) == 0


async def test_the_cache_is_bounded(cache_factory, make_org):
    org = make_org()
    cache = cache_factory(max_entries=2)
    for role in ("admin", "dispatcher", "viewer"):
        await cache.verify(org.token(role))
    assert len(cache) == 2
