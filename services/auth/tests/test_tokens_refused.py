"""The auth service verifies tokens like every other service (fleet_common): forged ones fail."""

import pytest

from .conftest import is_problem

FORGERIES = [
    "expired",
    "tampered",
    "alg_none",
    "hs256_public_key",
    "unknown_kid",
    "wrong_issuer",
    "garbage",
]


@pytest.fixture(scope="module")
def org(make_org):
    return make_org()


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_tokens_are_refused_by_the_service_itself(client, org, bad_tokens, kind):
    token = bad_tokens(org)[kind]
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert is_problem(response, 401), response.text
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_genuine_token_is_accepted(client, org):
    response = await client.get("/api/v1/auth/me", headers=org.headers("viewer"))
    assert response.status_code == 200
