"""Admins manage their org's users; tenant isolation, roles, last-admin protection."""

import pytest

from .conftest import PASSWORD, is_problem, new_email


@pytest.fixture
def org(make_org):
    return make_org()


def user_body(role="dispatcher", **overrides):
    return {
        "email": new_email(role),
        "password": PASSWORD,
        "full_name": "Dee Spatcher",
        "role": role,
        **overrides,
    }


async def test_admin_crud(client, org):
    admin = org.headers("admin")
    created = await client.post("/api/v1/users", json=user_body(), headers=admin)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["org_id"] == org.org_id
    assert "password" not in user
    assert "password_hash" not in user

    listed = await client.get("/api/v1/users", params={"limit": 2}, headers=admin)
    assert listed.status_code == 200
    page = listed.json()
    assert page["total"] == 4
    assert len(page["items"]) == 2
    viewers = await client.get("/api/v1/users", params={"role": "viewer"}, headers=admin)
    assert [u["id"] for u in viewers.json()["items"]] == [org.user_ids["viewer"]]

    patched = await client.patch(
        f"/api/v1/users/{user['id']}",
        json={"role": "viewer", "full_name": "Vi Ewer"},
        headers=admin,
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "viewer"
    assert patched.json()["full_name"] == "Vi Ewer"
    fetched = await client.get(f"/api/v1/users/{user['id']}", headers=admin)
    assert fetched.json()["role"] == "viewer"

    assert (await client.delete(f"/api/v1/users/{user['id']}", headers=admin)).status_code == 204
    assert is_problem(await client.get(f"/api/v1/users/{user['id']}", headers=admin), 404)


async def test_duplicate_user_email_is_a_conflict(client, org):
    body = user_body()
    assert (await client.post("/api/v1/users", json=body, headers=org.headers())).status_code == 201
    body["email"] = body["email"].upper()
    again = await client.post("/api/v1/users", json=body, headers=org.headers())
    assert is_problem(again, 409)


async def test_weak_password_for_a_new_user_is_422(client, org):
    response = await client.post(
        "/api/v1/users", json=user_body(password="tiny"), headers=org.headers()
    )
    assert is_problem(response, 422)
    assert response.json()["errors"][0]["loc"] == ["password"]


async def test_another_orgs_user_is_not_found(client, make_org):
    org_a, org_b = make_org(), make_org()
    victim = org_a.user_ids["dispatcher"]
    b_admin = org_b.headers("admin")
    assert is_problem(await client.get(f"/api/v1/users/{victim}", headers=b_admin), 404)
    assert is_problem(
        await client.patch(f"/api/v1/users/{victim}", json={"role": "admin"}, headers=b_admin),
        404,
    )
    assert is_problem(await client.delete(f"/api/v1/users/{victim}", headers=b_admin), 404)
    listed = (await client.get("/api/v1/users", headers=b_admin)).json()
    assert victim not in {u["id"] for u in listed["items"]}
    still = await client.get(f"/api/v1/users/{victim}", headers=org_a.headers("admin"))
    assert still.json()["role"] == "dispatcher"


@pytest.mark.parametrize("role", ["viewer", "dispatcher"])
async def test_non_admins_cannot_manage_users(client, org, role):
    headers = org.headers(role)
    assert is_problem(await client.post("/api/v1/users", json=user_body(), headers=headers), 403)
    assert is_problem(await client.get("/api/v1/users", headers=headers), 403)
    target = org.user_ids["viewer"]
    assert is_problem(
        await client.patch(f"/api/v1/users/{target}", json={"role": "admin"}, headers=headers),
        403,
    )
    assert is_problem(await client.delete(f"/api/v1/users/{target}", headers=headers), 403)


@pytest.mark.parametrize("role", ["dispatcher", "admin"])
async def test_the_directory_lists_the_orgs_active_users_by_name_and_nothing_more(
    client, make_org, role
):
    org, other = make_org(), make_org()
    admin = org.headers("admin")
    created = await client.post(
        "/api/v1/users", json=user_body("viewer", full_name="Aaron Early"), headers=admin
    )
    gone = await client.post(
        "/api/v1/users", json=user_body("viewer", full_name="Gone Away"), headers=admin
    )
    deactivated = await client.patch(
        f"/api/v1/users/{gone.json()['id']}", json={"is_active": False}, headers=admin
    )
    assert deactivated.status_code == 200

    listed = await client.get("/api/v1/users/directory", headers=org.headers(role))
    assert listed.status_code == 200, listed.text
    page = listed.json()
    ids = [u["id"] for u in page["items"]]
    # Sorted by full name: "Aaron Early" < "Admin …" < "Dispatcher …" < "Viewer …".
    assert ids == [
        created.json()["id"],
        org.user_ids["admin"],
        org.user_ids["dispatcher"],
        org.user_ids["viewer"],
    ]
    assert page["total"] == 4
    assert all(u.keys() == {"id", "full_name", "email"} for u in page["items"])
    assert page["items"][0]["email"] == created.json()["email"]
    assert not set(ids) & set(other.user_ids.values())

    second = await client.get(
        "/api/v1/users/directory", params={"limit": 2, "offset": 2}, headers=org.headers(role)
    )
    assert [u["id"] for u in second.json()["items"]] == ids[2:]
    assert second.json()["total"] == 4


async def test_a_viewer_may_not_read_the_directory(client, org):
    assert is_problem(
        await client.get("/api/v1/users/directory", headers=org.headers("viewer")), 403
    )
    assert is_problem(await client.get("/api/v1/users/directory"), 401)


async def test_the_last_admin_cannot_be_demoted_deactivated_or_deleted(client, org):
    admin = org.headers("admin")
    admin_id = org.user_ids["admin"]
    for change in ({"role": "dispatcher"}, {"is_active": False}):
        refused = await client.patch(f"/api/v1/users/{admin_id}", json=change, headers=admin)
        assert is_problem(refused, 409)
    assert is_problem(await client.delete(f"/api/v1/users/{admin_id}", headers=admin), 409)

    # With a second admin, the first may step down.
    promoted = await client.patch(
        f"/api/v1/users/{org.user_ids['dispatcher']}", json={"role": "admin"}, headers=admin
    )
    assert promoted.json()["role"] == "admin"
    stepped_down = await client.patch(
        f"/api/v1/users/{admin_id}", json={"role": "viewer"}, headers=admin
    )
    assert stepped_down.status_code == 200
    # ...and the one left is now the last.
    second = org.dispatcher  # its token still says dispatcher; log in again for the new role
    login = await client.post(
        "/api/v1/auth/login", json={"email": org.emails["dispatcher"], "password": PASSWORD}
    )
    new_admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert second != login.json()["access_token"]
    last = await client.delete(f"/api/v1/users/{org.user_ids['dispatcher']}", headers=new_admin)
    assert is_problem(last, 409)


async def test_deactivation_revokes_tokens_and_blocks_login(client, org):
    email = org.emails["viewer"]
    session = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    viewer_id = org.user_ids["viewer"]
    off = await client.patch(
        f"/api/v1/users/{viewer_id}", json={"is_active": False}, headers=org.headers()
    )
    assert off.json()["is_active"] is False
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert is_problem(refused, 401)
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert is_problem(login, 403)
    me = await client.get("/api/v1/auth/me", headers=org.headers("viewer"))
    assert is_problem(me, 401)


async def test_password_change_ends_sessions(client, org):
    email = org.emails["dispatcher"]
    session = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    changed = await client.patch(
        f"/api/v1/users/{org.user_ids['dispatcher']}",
        json={"password": "A-whole-new-Passw0rd"},
        headers=org.headers(),
    )
    assert changed.status_code == 200
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert is_problem(refused, 401)
    new_login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "A-whole-new-Passw0rd"}
    )
    assert new_login.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/users/not-a-uuid", None),
        ("GET", "/api/v1/users?limit=0", None),
        ("GET", "/api/v1/users?limit=100000", None),
        ("GET", "/api/v1/users?offset=-1", None),
        ("GET", "/api/v1/users?role=superuser", None),
        ("GET", "/api/v1/users/directory?limit=0", None),
        ("GET", "/api/v1/users/directory?limit=501", None),
        ("GET", "/api/v1/users/directory?limit=many", None),
        ("GET", "/api/v1/users/directory?offset=-1", None),
        ("POST", "/api/v1/users", {"email": "x@example.com"}),
        ("POST", "/api/v1/users", {**user_body(), "role": "owner"}),
        ("PATCH", "/api/v1/users/00000000-0000-0000-0000-000000000000", {"role": "god"}),
        ("PATCH", "/api/v1/users/00000000-0000-0000-0000-000000000000", {"is_active": "maybe"}),
    ],
)
async def test_bad_input_is_422(client, org, method, path, body):
    response = await client.request(method, path, json=body, headers=org.headers())
    assert is_problem(response, 422), response.text


async def test_unknown_user_is_404(client, org):
    response = await client.get(
        "/api/v1/users/00000000-0000-0000-0000-000000000000", headers=org.headers()
    )
    assert is_problem(response, 404)
