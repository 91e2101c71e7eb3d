"""Firebase sign-in, verified by firebase-admin in emulator mode (unsigned emulator tokens).

firebase-admin's verify_id_token makes no network call in emulator mode when revocation is
not checked, so no emulator needs to run: the service is started with
FIREBASE_AUTH_EMULATOR_HOST pointing at a port nobody listens on.
"""

import base64
import json
import time

from fleet_devstack.plugin import TEST_FIREBASE_PROJECT

from .conftest import is_problem


def emulator_id_token(email: str, *, verified: bool = True, project=TEST_FIREBASE_PROJECT) -> str:
    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": f"firebase-uid-{abs(hash(email))}",
        "user_id": f"firebase-uid-{abs(hash(email))}",
        "email": email,
        "email_verified": verified,
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "firebase": {"identities": {"email": [email]}, "sign_in_provider": "password"},
    }
    # What the Auth emulator issues: alg "none" and an empty signature.
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_known_email_signs_in(client, make_org):
    org = make_org()
    response = await client.post(
        "/api/v1/auth/firebase",
        json={"id_token": emulator_id_token(org.emails["dispatcher"].upper())},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == org.user_ids["dispatcher"]
    assert body["user"]["role"] == "dispatcher"
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200


async def test_unknown_email_is_forbidden(client):
    response = await client.post(
        "/api/v1/auth/firebase", json={"id_token": emulator_id_token("stranger@example.com")}
    )
    assert is_problem(response, 403)


async def test_unverified_email_is_forbidden(client, make_org):
    org = make_org()
    token = emulator_id_token(org.emails["admin"], verified=False)
    response = await client.post("/api/v1/auth/firebase", json={"id_token": token})
    assert is_problem(response, 403)


async def test_token_of_another_project_or_garbage_is_401(client, make_org):
    org = make_org()
    other = emulator_id_token(org.emails["admin"], project="someone-elses-project")
    assert is_problem(await client.post("/api/v1/auth/firebase", json={"id_token": other}), 401)
    garbage = await client.post("/api/v1/auth/firebase", json={"id_token": "abc.def"})
    assert is_problem(garbage, 401)
