"""`/api/v1/alert-rules` and `/api/v1/push-tokens`: validation, roles, tenant isolation."""

import uuid

import pytest

pytestmark = pytest.mark.usefixtures("notification")

VALID = {"name": "Speeding", "event_types": ["overspeed"], "channels": ["in_app"]}


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


@pytest.fixture(scope="module")
def orgs(make_org):
    return make_org(), make_org()


async def test_rule_crud_roles_and_isolation(notification, orgs):
    client, _app, _redis = notification
    org, other = orgs
    created = await client.post(
        "/api/v1/alert-rules",
        headers=org.headers("dispatcher"),
        json={
            **VALID,
            "channels": ["in_app", "email"],
            "recipients": {"emails": ["a@example.com"]},
            "cooldown_s": 120,
            "active_hours": {"start": "08:00", "end": "18:00", "days": [0, 1, 1]},
            "timezone": "America/New_York",
            "severity": "critical",
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["active_hours"]["days"] == [0, 1]
    rid = rule["id"]
    assert (await client.get("/api/v1/alert-rules", headers=org.headers("viewer"))).json()[
        "total"
    ] == 1
    patched = await client.patch(
        f"/api/v1/alert-rules/{rid}",
        headers=org.headers(),
        json={"active": False, "active_hours": None},
    )
    assert patched.json()["active"] is False
    assert patched.json()["active_hours"] is None
    assert_problem(
        await client.patch(
            f"/api/v1/alert-rules/{rid}", headers=org.headers(), json={"recipients": {}}
        ),
        422,
    )

    viewer = org.headers("viewer")
    assert_problem(await client.post("/api/v1/alert-rules", headers=viewer, json=VALID), 403)
    assert_problem(await client.patch(f"/api/v1/alert-rules/{rid}", headers=viewer, json={}), 403)
    assert_problem(await client.delete(f"/api/v1/alert-rules/{rid}", headers=viewer), 403)
    theirs = other.headers()
    assert (await client.get("/api/v1/alert-rules", headers=theirs)).json()["total"] == 0
    assert_problem(await client.get(f"/api/v1/alert-rules/{rid}", headers=theirs), 404)
    assert_problem(
        await client.patch(f"/api/v1/alert-rules/{rid}", headers=theirs, json={"name": "x"}), 404
    )
    assert_problem(await client.delete(f"/api/v1/alert-rules/{rid}", headers=theirs), 404)
    assert_problem(await client.get("/api/v1/alert-rules"), 401)

    assert (
        await client.delete(f"/api/v1/alert-rules/{rid}", headers=org.headers())
    ).status_code == 204
    assert_problem(await client.get(f"/api/v1/alert-rules/{rid}", headers=org.headers()), 404)


WEBHOOK = {"secret": "0123456789abcdef0123"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_types": []}, "at least 1"),
        ({"event_types": ["explosion"]}, "event_types"),
        ({"channels": ["sms"]}, "channels"),
        ({"channels": ["email"]}, "email channel needs"),
        ({"channels": ["webhook"]}, "webhook channel needs"),
        ({"recipients": {"emails": ["not-an-email"]}}, "email"),
        ({"recipients": {"webhook": {"url": "ftp://x.example/h", **WEBHOOK}}}, "http or https"),
        ({"recipients": {"webhook": {"url": "http://10.1.2.3/h", **WEBHOOK}}}, "private"),
        ({"recipients": {"webhook": {"url": "http://169.254.169.254/", **WEBHOOK}}}, "private"),
        ({"recipients": {"webhook": {"url": "http://[::1]:80/", **WEBHOOK}}}, "private"),
        ({"recipients": {"webhook": {"url": "http://printer.local./", **WEBHOOK}}}, "not a public"),
        (
            {"recipients": {"webhook": {"url": "http://u:p@hooks.example/", **WEBHOOK}}},
            "credentials",
        ),
        ({"recipients": {"webhook": {"url": "https://hooks.example/", "secret": "short"}}}, "16"),
        ({"cooldown_s": -1}, "greater than or equal"),
        ({"cooldown_s": 10**9}, "less than or equal"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"timezone": "../../etc/passwd"}, "IANA"),
        ({"active_hours": {"start": "25:00", "end": "06:00"}}, "pattern"),
        ({"active_hours": {"start": "08:00", "end": "08:00"}}, "must differ"),
        ({"active_hours": {"start": "08:00", "end": "09:00", "days": [7]}}, "less than or equal"),
        ({"vehicle_ids": ["nope"]}, "UUID"),
        ({"name": "x" * 201}, "at most 200"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"surprise": True}, "Extra inputs"),
    ],
)
async def test_invalid_rules_are_422(notification, orgs, change, reason):
    client, _app, _redis = notification
    response = await client.post(
        "/api/v1/alert-rules", headers=orgs[0].headers(), json={**VALID, **change}
    )
    problem = assert_problem(response, 422)
    text = problem["detail"] + " ".join(e.get("msg", "") for e in problem.get("errors", []))
    text += " ".join(".".join(e.get("loc", [])) for e in problem.get("errors", []))
    assert reason in text


async def test_allowlisted_loopback_webhook_is_accepted(notification, orgs):
    client, _app, _redis = notification
    response = await client.post(
        "/api/v1/alert-rules",
        headers=orgs[0].headers(),
        json={
            **VALID,
            "channels": ["webhook"],
            "recipients": {"webhook": {"url": "http://127.0.0.1:9/h", **WEBHOOK}},
        },
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b"null", b'"x"', b'{"name": 1e400}', b"\xff\xfe", b'{"name":' * 10000],
)
async def test_hostile_bodies_are_4xx(notification, orgs, content):
    client, _app, _redis = notification
    for path in ("/api/v1/alert-rules", "/api/v1/push-tokens"):
        response = await client.post(
            path, headers={**orgs[0].headers(), "Content-Type": "application/json"}, content=content
        )
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_push_tokens_belong_to_their_user(notification, orgs):
    client, _app, _redis = notification
    org, other = orgs
    token = f"tok-{uuid.uuid4().hex}"
    created = await client.post(
        "/api/v1/push-tokens", headers=org.headers("viewer"), json={"token": token}
    )
    assert created.status_code == 201
    tid = created.json()["id"]
    again = await client.post(
        "/api/v1/push-tokens",
        headers=org.headers("viewer"),
        json={"token": token, "platform": "ios"},
    )
    assert again.json()["id"] == tid
    assert [
        t["id"]
        for t in (await client.get("/api/v1/push-tokens", headers=org.headers("viewer"))).json()
    ] == [tid]
    assert (await client.get("/api/v1/push-tokens", headers=org.headers())).json() == []
    assert_problem(await client.delete(f"/api/v1/push-tokens/{tid}", headers=org.headers()), 404)
    assert_problem(await client.delete(f"/api/v1/push-tokens/{tid}", headers=other.headers()), 404)
    for bad in (
        {"token": "short"},
        {"token": "x" * 5000},
        {"token": "a b c d e f g h i j k l"},
        {"token": token, "platform": "symbian"},
        {},
    ):
        assert_problem(
            await client.post("/api/v1/push-tokens", headers=org.headers(), json=bad), 422
        )
    assert_problem(await client.post("/api/v1/push-tokens", json={"token": token}), 401)
    deleted = await client.delete(f"/api/v1/push-tokens/{tid}", headers=org.headers("viewer"))
    assert deleted.status_code == 204
