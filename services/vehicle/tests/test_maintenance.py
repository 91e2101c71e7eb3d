"""Maintenance schedules: CRUD, servicing (the next due point moves), what the location
service is told, hostile input and tenant isolation."""

import json
import uuid

import pytest

from fleet_common.redis import METERS_FIELD, detection_state_key

from .test_api import assert_problem, make_device, make_vehicle


def url(vehicle: dict, *rest: str) -> str:
    return "/".join([f"/api/v1/vehicles/{vehicle['id']}/maintenance", *rest])


async def make_schedule(client, org, vehicle, **fields) -> dict:
    body = {"name": "Oil change", "meter": "odometer_km", "interval": 5000, **fields}
    response = await client.post(url(vehicle), json=body, headers=org.headers("dispatcher"))
    assert response.status_code == 201, response.text
    return response.json()


async def test_schedule_crud_and_roles(client, org_a):
    vehicle = await make_vehicle(client, org_a, odometer_km=1200.5, engine_hours=310)
    # By default first due one interval past the vehicle's meter.
    oil = await make_schedule(client, org_a, vehicle)
    assert oil["next_due"] == 6200.5
    assert oil["current_reading"] == 1200.5
    assert oil["due"] is False
    check = await make_schedule(
        client,
        org_a,
        vehicle,
        name="Engine check",
        meter="engine_hours",
        interval=250,
        next_due=300,
    )
    assert check["current_reading"] == 310
    assert check["due"] is True

    listed = await client.get(url(vehicle), headers=org_a.headers("viewer"))
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["items"]] == ["Engine check", "Oil change"]
    got = await client.get(url(vehicle, oil["id"]), headers=org_a.headers("viewer"))
    assert got.json()["id"] == oil["id"]

    patched = await client.patch(
        url(vehicle, oil["id"]),
        json={"interval": 10000, "next_due": 11200.5},
        headers=org_a.headers("dispatcher"),
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["interval"], patched.json()["next_due"]) == (10000, 11200.5)

    for method, path, body in (
        ("POST", url(vehicle), {"name": "x", "meter": "odometer_km", "interval": 1}),
        ("PATCH", url(vehicle, oil["id"]), {"name": "x"}),
        ("DELETE", url(vehicle, oil["id"]), None),
        ("POST", url(vehicle, oil["id"], "service"), None),
    ):
        response = await client.request(method, path, json=body, headers=org_a.headers("viewer"))
        assert_problem(response, 403)

    deleted = await client.delete(url(vehicle, oil["id"]), headers=org_a.headers("dispatcher"))
    assert deleted.status_code == 204
    assert_problem(await client.get(url(vehicle, oil["id"]), headers=org_a.headers()), 404)
    assert [
        s["id"] for s in (await client.get(url(vehicle), headers=org_a.headers())).json()["items"]
    ] == [check["id"]]


async def test_servicing_moves_the_next_due_point_and_tells_the_location_service(
    client, org_a, redis, device_events, internal_headers
):
    vehicle = await make_vehicle(client, org_a, odometer_km=100)
    device = await make_device(client, org_a, vehicle_id=vehicle["id"])
    oil = await make_schedule(client, org_a, vehicle, next_due=1000)
    await device_events.wait_for(device["uid"], "upsert")
    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.json()["maintenance"] == [
        {"id": oil["id"], "name": "Oil change", "meter": "odometer_km", "next_due": 1000.0}
    ]
    assert lookup.json()["odometer_km"] == 100.0

    # The meters the location service counted for this vehicle (another vehicle's are not).
    meters = {"vehicle_id": vehicle["id"], "odometer_km": 1012.25, "engine_hours": 3.5}
    await redis.hset(detection_state_key(device["id"]), METERS_FIELD, json.dumps(meters))
    listed = (await client.get(url(vehicle), headers=org_a.headers())).json()["items"]
    assert (listed[0]["current_reading"], listed[0]["due"]) == (1012.25, True)

    headers = org_a.headers("dispatcher")
    serviced = await client.post(url(vehicle, oil["id"], "service"), headers=headers)
    assert serviced.status_code == 200, serviced.text
    body = serviced.json()
    assert body["next_due"] == 6012.25  # the meter at the service + the interval
    assert body["last_serviced_reading"] == 1012.25
    assert body["last_serviced_by"] == org_a.user_ids["dispatcher"]
    assert body["last_serviced_at"] is not None
    assert body["due"] is False
    await device_events.wait_for(device["uid"], "upsert")
    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.json()["maintenance"][0]["next_due"] == 6012.25

    # A reading written down at the garage wins over the counted meter.
    serviced = await client.post(
        url(vehicle, oil["id"], "service"), json={"reading": 1500}, headers=headers
    )
    assert serviced.json()["next_due"] == 6500

    meters["vehicle_id"] = str(uuid.uuid4())
    await redis.hset(detection_state_key(device["id"]), METERS_FIELD, json.dumps(meters))
    listed = (await client.get(url(vehicle), headers=org_a.headers())).json()["items"]
    assert listed[0]["current_reading"] == 100.0  # the vehicle's entered odometer


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Oil", "meter": "odometer_km", "interval": 0},
        {"name": "Oil", "meter": "odometer_km", "interval": -5},
        {"name": "Oil", "meter": "odometer_km", "interval": 1e12},
        {"name": "Oil", "meter": "engine_hours", "interval": 200_000},
        {"name": "Oil", "meter": "odometer_km", "interval": "often"},
        {"name": "Oil", "meter": "fuel_l", "interval": 10},
        {"name": "", "meter": "odometer_km", "interval": 10},
        {"name": "Oil\x00", "meter": "odometer_km", "interval": 10},
        {"name": "x" * 500, "meter": "odometer_km", "interval": 10},
        {"name": "Oil", "meter": "odometer_km", "interval": 10, "next_due": -1},
        {"name": "Oil", "meter": "odometer_km", "interval": 10, "org_id": str(uuid.uuid4())},
        {"meter": "odometer_km", "interval": 10},
        [],
    ],
)
async def test_hostile_schedules_are_refused(client, org_a, body):
    vehicle = await make_vehicle(client, org_a)
    response = await client.post(url(vehicle), json=body, headers=org_a.headers())
    assert_problem(response, 422)


async def test_hostile_updates_and_services_are_refused(client, org_a):
    vehicle = await make_vehicle(client, org_a)
    check = await make_schedule(client, org_a, vehicle, meter="engine_hours", interval=500)
    headers = org_a.headers()
    for body in (
        {"interval": None},
        {"next_due": None},
        {"meter": "odometer_km"},
        {"interval": 150_000},  # more engine hours than any interval makes sense for
        {"interval": 0},
    ):
        response = await client.patch(url(vehicle, check["id"]), json=body, headers=headers)
        assert_problem(response, 422)
    for body in ({"reading": -1}, {"reading": "now"}, {"reading": 1e12}, {"when": "now"}):
        response = await client.post(
            url(vehicle, check["id"], "service"), json=body, headers=headers
        )
        assert_problem(response, 422)
    raw = await client.post(
        url(vehicle, check["id"], "service"),
        content=b"{not json",
        headers={**headers, "content-type": "application/json"},
    )
    assert_problem(raw, 422)
    assert_problem(await client.get("/api/v1/vehicles/x/maintenance", headers=headers), 422)
    assert_problem(await client.get(url(vehicle, "nope"), headers=headers), 422)
    unchanged = (await client.get(url(vehicle, check["id"]), headers=headers)).json()
    assert (unchanged["interval"], unchanged["next_due"]) == (500, 500)


async def test_another_orgs_schedules_are_not_found(client, org_a, org_b):
    vehicle = await make_vehicle(client, org_a)
    theirs = await make_vehicle(client, org_b)
    oil = await make_schedule(client, org_a, vehicle)
    for path in (url(vehicle), url(vehicle, oil["id"]), url(theirs, oil["id"])):
        assert_problem(await client.get(path, headers=org_b.headers()), 404)
    for method, path, body in (
        ("POST", url(vehicle), {"name": "x", "meter": "odometer_km", "interval": 1}),
        ("PATCH", url(vehicle, oil["id"]), {"next_due": 0}),
        ("PATCH", url(theirs, oil["id"]), {"next_due": 0}),
        ("POST", url(vehicle, oil["id"], "service"), {"reading": 0}),
        ("POST", url(theirs, oil["id"], "service"), {"reading": 0}),
        ("DELETE", url(vehicle, oil["id"]), None),
        ("DELETE", url(theirs, oil["id"]), None),
    ):
        response = await client.request(method, path, json=body, headers=org_b.headers())
        assert_problem(response, 404)
    unchanged = (await client.get(url(vehicle, oil["id"]), headers=org_a.headers())).json()
    assert unchanged["next_due"] == oil["next_due"]
    assert unchanged["last_serviced_at"] is None
    # A deleted vehicle's schedules are gone with it.
    await client.delete(f"/api/v1/vehicles/{vehicle['id']}", headers=org_a.headers())
    assert_problem(await client.get(url(vehicle), headers=org_a.headers()), 404)
