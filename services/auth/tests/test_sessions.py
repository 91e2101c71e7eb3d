"""Register, login, me, refresh (rotation and reuse detection), logout."""

import pytest

from .conftest import PASSWORD, is_problem, new_email


async def register(client, email=None, **overrides):
    body = {
        "org_name": "Acme Logistics",
        "email": email or new_email("admin"),
        "password": PASSWORD,
        "full_name": "Ada Admin",
        **overrides,
    }
    return await client.post("/api/v1/auth/register", json=body)


async def test_register_login_me(client):
    email = new_email("Mixed.Case")
    registered = await register(client, email=email)
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["user"]["role"] == "admin"
    assert body["user"]["email"] == email.lower()
    assert body["org"]["name"] == "Acme Logistics"
    assert body["user"]["org_id"] == body["org"]["id"]

    login = await client.post(
        "/api/v1/auth/login", json={"email": email.upper(), "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["user"]["id"] == body["user"]["id"]
    assert me.json()["org"]["id"] == body["org"]["id"]
    assert me.json()["user"]["last_login_at"] is not None


async def test_access_token_claims_match_the_contract(client, auth_service):
    import jwt

    registered = (await register(client)).json()
    token = registered["access_token"]
    header = jwt.get_unverified_header(token)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert (key["alg"], key["use"]) == ("EdDSA", "sig")
    assert "d" not in key
    claims = jwt.decode(
        token, jwt.PyJWK.from_dict(key).key, algorithms=["EdDSA"], issuer="fleet-tracker"
    )
    assert claims["sub"] == registered["user"]["id"]
    assert claims["org"] == registered["org"]["id"]
    assert claims["role"] == "admin"
    assert 850 <= claims["exp"] - claims["iat"] <= 900
    assert claims["jti"]


async def test_duplicate_email_is_a_conflict_whatever_the_case(client):
    email = new_email("dup")
    assert (await register(client, email=email)).status_code == 201
    again = await register(client, email=email.upper())
    assert is_problem(again, 409)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1!", "at least 10"),
        ("aaaaaaaaaaaaaa", "different characters"),
        ("Password123", "too common"),
        ("x" * 300, "at most 256"),
    ],
)
async def test_weak_passwords_are_refused_with_a_clear_422(client, password, rule):
    response = await register(client, password=password)
    assert is_problem(response, 422)
    assert rule in response.json()["detail"]


async def test_password_containing_the_email_is_refused(client):
    response = await register(
        client, email="dispatcher.jones@example.com", password="dispatcher.jones-2026"
    )
    assert is_problem(response, 422)


async def test_wrong_password_and_unknown_email_look_the_same(client):
    email = new_email("wrong")
    await register(client, email=email)
    headers = {"X-Forwarded-For": "198.51.100.10"}
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "Not-The-Passw0rd"}, headers=headers
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": new_email(), "password": PASSWORD}, headers=headers
    )
    assert is_problem(wrong, 401)
    assert is_problem(unknown, 401)
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_refresh_rotates_and_reuse_revokes_the_family(client):
    first = (await register(client)).json()
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"]["id"] == first["user"]["id"]

    # The first token was spent: presenting it again is theft, and ends the whole family.
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert is_problem(replay, 401)
    after_theft = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert is_problem(after_theft, 401)


async def test_other_sessions_survive_a_family_revocation(client):
    email = new_email("sessions")
    first = (await register(client, email=email)).json()
    other = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    still = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert still.status_code == 200


async def test_unknown_refresh_token_is_401(client):
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert is_problem(response, 401)


async def test_logout_revokes_the_session(client):
    email = new_email("logout")
    one = (await register(client, email=email)).json()
    two = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {one['access_token']}"}
    out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": one["refresh_token"]}, headers=headers
    )
    assert out.status_code == 204
    revoked = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": one["refresh_token"]}
    )
    assert is_problem(revoked, 401)
    alive = await client.post("/api/v1/auth/refresh", json={"refresh_token": two["refresh_token"]})
    assert alive.status_code == 200
    # The signed-out session's access token is revoked too (gateway tests cover that in
    # full); the other session's still works: without a refresh token, every one ends.
    headers = {"Authorization": f"Bearer {two['access_token']}"}
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    ended = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": alive.json()["refresh_token"]}
    )
    assert is_problem(ended, 401)


async def test_logout_cannot_revoke_someone_elses_session(client):
    mine = (await register(client)).json()
    theirs = (await register(client)).json()
    response = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": theirs["refresh_token"]},
        headers={"Authorization": f"Bearer {mine['access_token']}"},
    )
    assert is_problem(response, 401)
    alive = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": theirs["refresh_token"]}
    )
    assert alive.status_code == 200


async def test_me_and_logout_need_a_token(client):
    assert is_problem(await client.get("/api/v1/auth/me"), 401)
    assert is_problem(await client.post("/api/v1/auth/logout"), 401)
    bad = await client.get("/api/v1/auth/me", headers={"Authorization": "Basic abc"})
    assert is_problem(bad, 401)


NUL_EMAIL = '{"email": "\u00fc\u00f1\u00ee@\u0000.com", "password": "x"}'.encode()


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        ("/api/v1/auth/register", b"{not json", 422),
        ("/api/v1/auth/register", b"[1, 2, 3]", 422),
        ("/api/v1/auth/register", b'{"org_name": "x"}', 422),
        (
            "/api/v1/auth/login",
            b'{"email": "' + b"a" * 5000 + b'@example.com", "password": "x"}',
            422,
        ),
        ("/api/v1/auth/login", b'{"email": "not-an-email", "password": "x"}', 422),
        (
            "/api/v1/auth/login",
            b'{"email": "a@example.com", "password": "' + b"p" * 5000 + b'"}',
            422,
        ),
        ("/api/v1/auth/login", NUL_EMAIL, 422),
        ("/api/v1/auth/login", b"\xff\xfe\x00garbage", 422),
        ("/api/v1/auth/refresh", b'{"refresh_token": ""}', 422),
        ("/api/v1/auth/refresh", b'{"refresh_token": 12}', 422),
        ("/api/v1/auth/firebase", b'{"id_token": null}', 422),
    ],
)
async def test_hostile_input_gets_4xx_problem_json(client, path, content, status):
    response = await client.post(
        path, content=content, headers={"Content-Type": "application/json"}
    )
    assert is_problem(response, status), response.text


async def test_unicode_names_round_trip(client):
    response = await register(client, org_name="Vận tải Sài Gòn 🚚", full_name="Nguyễn Văn Ánh")
    assert response.status_code == 201
    assert response.json()["org"]["name"] == "Vận tải Sài Gòn 🚚"
    blank = await register(client, org_name="   ")
    assert is_problem(blank, 422)
    huge = await register(client, full_name="n" * 5000)
    assert is_problem(huge, 422)
