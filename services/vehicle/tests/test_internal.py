"""The internal uid lookup the location service uses."""

import hashlib
import uuid

import pytest


async def make_device(client, org, **fields) -> dict:
    body = {"uid": f"int-{uuid.uuid4().hex[:12]}", "name": "GPS", **fields}
    response = await client.post("/api/v1/devices", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Internal-Token": "wrong"}, {"X-Internal-Token": ""}, {"Authorization": "Bearer x"}],
)
async def test_callers_without_the_internal_credential_are_refused(client, headers):
    for path in ("/internal/devices/whatever", "/internal/devices"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_user_token_is_not_the_internal_credential(client, org_a):
    response = await client.get("/internal/devices", headers=org_a.headers())
    assert response.status_code == 403


async def test_lookup_by_uid(client, org_a, internal_headers):
    vehicle = (
        await client.post(
            "/api/v1/vehicles",
            json={
                "name": "Van",
                "plate": f"I{uuid.uuid4().hex[:6]}",
                "speed_limit_kph": 70,
                "group": "North depot",
            },
            headers=org_a.headers(),
        )
    ).json()
    device = await make_device(client, org_a, vehicle_id=vehicle["id"], protocol="osmand")
    response = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert response.status_code == 200
    assert response.json() == {
        "device_id": device["id"],
        "uid": device["uid"],
        "vehicle_id": vehicle["id"],
        "org_id": org_a.org_id,
        "speed_limit_kph": 70.0,
        "vehicle_group": "North depot",
        "protocol": "osmand",
        "active": True,
        "http_key_sha256": hashlib.sha256(device["credentials"]["http_key"].encode()).hexdigest(),
        "http_key_required": True,
        "odometer_km": 0.0,
        "engine_hours": 0.0,
        "maintenance": [],
    }
    for uid in ("no-such-device", "a%2Fb", "%24SYS", "x" * 200):
        missing = await client.get(f"/internal/devices/{uid}", headers=internal_headers)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
    await client.delete(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    gone = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert gone.status_code == 404


async def test_warm_up_pages_through_active_devices(client, make_org, internal_headers):
    org = make_org()
    active = [await make_device(client, org) for _ in range(3)]
    inactive = await make_device(client, org, active=False)
    seen: list[dict] = []
    after = None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = (
            await client.get("/internal/devices", params=params, headers=internal_headers)
        ).json()
        seen += page["items"]
        after = page["next_after"]
        if after is None:
            break
    uids = [item["uid"] for item in seen]
    assert uids == sorted(uids)
    assert {d["uid"] for d in active} <= set(uids)
    assert inactive["uid"] not in uids
    assert all(item["active"] for item in seen)
    for params in ({"limit": 0}, {"limit": 10**6}, {"after": "a/b"}):
        response = await client.get("/internal/devices", params=params, headers=internal_headers)
        assert response.status_code == 422
