"""The public API: CRUD, validation, conflicts, roles, history, events and tenant isolation."""

import json
import uuid

import pytest

from fleet_common.redis import latest_key


def plate() -> str:
    return f"T{uuid.uuid4().hex[:7].upper()}"


def new_uid() -> str:
    return f"api-{uuid.uuid4().hex[:12]}"


def assert_problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    if field is not None:
        locations = [err["loc"][-1] for err in body.get("errors", [])]
        assert field in locations or field in body["detail"], body
    return body


async def post(client, org, path, body, role="dispatcher"):
    return await client.post(f"/api/v1{path}", json=body, headers=org.headers(role))


async def make_vehicle(client, org, **fields) -> dict:
    response = await post(client, org, "/vehicles", {"name": "Van", "plate": plate(), **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def make_driver(client, org, **fields) -> dict:
    body = {"name": "Ana", "licence_number": f"L{uuid.uuid4().hex[:9]}", **fields}
    response = await post(client, org, "/drivers", body)
    assert response.status_code == 201, response.text
    return response.json()


async def make_device(client, org, **fields) -> dict:
    response = await post(client, org, "/devices", {"uid": new_uid(), "name": "GPS", **fields})
    assert response.status_code == 201, response.text
    return response.json()


# -- vehicles -------------------------------------------------------------------------------


async def test_vehicle_crud(client, org_a):
    created = await make_vehicle(
        client,
        org_a,
        vin="1HGCM82633A004352",
        make="Ford",
        model="Transit",
        year=2021,
        type="van",
        speed_limit_kph=90,
        group="North",
        tags=["cold-chain"],
        odometer_km=1200.5,
    )
    assert created["org_id"] == org_a.org_id
    assert created["type"] == "van"
    assert created["status"] == "active"
    url = f"/api/v1/vehicles/{created['id']}"
    response = await client.patch(
        url, json={"status": "maintenance", "vin": None}, headers=org_a.headers()
    )
    assert response.status_code == 200
    assert response.json()["status"] == "maintenance"
    assert response.json()["vin"] is None
    assert (await client.get(url, headers=org_a.headers("viewer"))).json()["make"] == "Ford"


async def test_duplicate_plate_is_409_within_an_org_but_not_across(client, org_a, org_b):
    vehicle = await make_vehicle(client, org_a)
    same = vehicle["plate"].lower()
    assert_problem(await post(client, org_a, "/vehicles", {"name": "x", "plate": same}), 409)
    other = await make_vehicle(client, org_a)
    response = await client.patch(
        f"/api/v1/vehicles/{other['id']}", json={"plate": same}, headers=org_a.headers()
    )
    assert_problem(response, 409)
    assert (await post(client, org_b, "/vehicles", {"name": "x", "plate": same})).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vin", "1HGCM82633A00435"),  # 16 characters
        ("vin", "1HGCM82633A00435I"),  # I is not allowed
        ("vin", "1HGCM82633A00435Q2"),
        ("vin", "<script>alert(1)</script>"),
        ("speed_limit_kph", -10),
        ("speed_limit_kph", 0),
        ("speed_limit_kph", 10_000),
        ("speed_limit_kph", "fast"),
        ("year", 1800),
        ("odometer_km", -1),
        ("type", "spaceship"),
        ("status", "gone"),
        ("plate", ""),
        ("plate", "AB/12;DROP TABLE"),
        ("name", ""),
        ("name", "x" * 121),
        ("name", "bad\x00name"),
        ("tags", ["t"] * 21),
        ("notes", "n" * 2001),
        ("unknown_field", 1),
    ],
)
async def test_bad_vehicle_input_is_422_naming_the_field(client, org_a, field, value):
    body = {"name": "Van", "plate": plate(), field: value}
    assert_problem(await post(client, org_a, "/vehicles", body), 422, field)


async def test_bad_vehicle_update_is_422_naming_the_field(client, org_a):
    vehicle = await make_vehicle(client, org_a)
    url = f"/api/v1/vehicles/{vehicle['id']}"
    for body, field in (
        ({"speed_limit_kph": -5}, "speed_limit_kph"),
        ({"vin": "short"}, "vin"),
        ({"name": None}, "name"),
    ):
        assert_problem(await client.patch(url, json=body, headers=org_a.headers()), 422, field)


async def test_vehicle_list_filters_sorts_searches_and_paginates(client, make_org):
    org = make_org()
    await make_vehicle(client, org, name="Alpha truck", type="truck", group="G1", tags=["x"])
    await make_vehicle(client, org, name="Bravo van", type="van", status="inactive")
    await make_vehicle(client, org, name="Charlie bus", type="bus", group="G1", plate="ZZ-999")

    async def names(**params) -> list[str]:
        response = await client.get("/api/v1/vehicles", params=params, headers=org.headers())
        assert response.status_code == 200, response.text
        return [v["name"] for v in response.json()["items"]]

    assert await names() == ["Alpha truck", "Bravo van", "Charlie bus"]
    assert await names(sort="-name") == ["Charlie bus", "Bravo van", "Alpha truck"]
    assert await names(type="van") == ["Bravo van"]
    assert await names(status="inactive") == ["Bravo van"]
    assert await names(group="G1") == ["Alpha truck", "Charlie bus"]
    assert await names(tag="x") == ["Alpha truck"]
    assert await names(q="zz-9") == ["Charlie bus"]
    assert await names(q="%") == []
    assert await names(q="' OR 1=1 --") == []
    page = await client.get(
        "/api/v1/vehicles", params={"limit": 1, "offset": 1}, headers=org.headers()
    )
    assert page.json()["total"] == 3
    assert [v["name"] for v in page.json()["items"]] == ["Bravo van"]
    whole = await client.get("/api/v1/vehicles", params={"limit": 1000}, headers=org.headers())
    assert whole.status_code == 200
    assert whole.json()["limit"] == 1000
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"limit": 100_000},
        {"offset": -1},
        {"sort": "name;drop"},
        {"type": "x"},
    ):
        response = await client.get("/api/v1/vehicles", params=params, headers=org.headers())
        assert_problem(response, 422)


async def test_a_deleted_vehicle_is_gone_but_its_history_is_kept(client, org_a):
    vehicle = await make_vehicle(client, org_a)
    driver = await make_driver(client, org_a)
    device = await make_device(client, org_a, vehicle_id=vehicle["id"])
    url = f"/api/v1/vehicles/{vehicle['id']}"
    assigned = await client.put(
        f"{url}/driver", json={"driver_id": driver["id"]}, headers=org_a.headers()
    )
    assert assigned.status_code == 200
    assert (await client.delete(url, headers=org_a.headers())).status_code == 204

    assert_problem(await client.get(url, headers=org_a.headers()), 404)
    archived = (
        await client.get(url, params={"include_archived": "true"}, headers=org_a.headers())
    ).json()
    assert archived["archived_at"] is not None
    assert archived["current_driver_id"] is None
    listed = await client.get("/api/v1/vehicles", headers=org_a.headers())
    assert vehicle["id"] not in {v["id"] for v in listed.json()["items"]}
    with_archived = await client.get(
        "/api/v1/vehicles", params={"include_archived": "true"}, headers=org_a.headers()
    )
    assert vehicle["id"] in {v["id"] for v in with_archived.json()["items"]}
    assert_problem(await client.get(f"{url}/driver-assignments", headers=org_a.headers()), 404)
    history = {"include_archived": "true"}
    drivers = (
        await client.get(f"{url}/driver-assignments", params=history, headers=org_a.headers())
    ).json()
    assert drivers["items"][0]["driver_id"] == driver["id"]
    assert drivers["items"][0]["ended_at"] is not None
    devices = (
        await client.get(f"{url}/device-assignments", params=history, headers=org_a.headers())
    ).json()
    assert devices["items"][0]["device_id"] == device["id"]
    assert devices["items"][0]["ended_at"] is not None
    refitted = await client.get(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert refitted.json()["vehicle_id"] is None
    # A deleted vehicle cannot be changed or deleted again, and its plate is free again.
    assert_problem(await client.patch(url, json={"name": "x"}, headers=org_a.headers()), 404)
    assert_problem(await client.delete(url, headers=org_a.headers()), 404)
    assert_problem(
        await client.put(f"{url}/driver", json={"driver_id": None}, headers=org_a.headers()), 404
    )
    again = await post(client, org_a, "/vehicles", {"name": "New", "plate": vehicle["plate"]})
    assert again.status_code == 201


# -- drivers and assignments -------------------------------------------------------------------


async def test_driver_crud_and_duplicate_licence(client, org_a):
    driver = await make_driver(client, org_a, phone="+84 90 123 4567", licence_expiry="2030-01-31")
    url = f"/api/v1/drivers/{driver['id']}"
    response = await client.patch(url, json={"phone": None}, headers=org_a.headers())
    assert response.status_code == 200
    assert response.json()["phone"] is None
    duplicate = {"name": "B", "licence_number": driver["licence_number"].lower()}
    assert_problem(await post(client, org_a, "/drivers", duplicate), 409)
    for body, field in (
        ({"name": "B", "licence_number": "L1", "licence_expiry": "31/01/2030"}, "licence_expiry"),
        ({"name": "B", "licence_number": "L1", "phone": "call me"}, "phone"),
        ({"name": "B", "licence_number": "../../etc"}, "licence_number"),
        ({"name": "B"}, "licence_number"),
    ):
        assert_problem(await post(client, org_a, "/drivers", body), 422, field)
    assert (await client.delete(url, headers=org_a.headers())).status_code == 204
    assert_problem(await client.get(url, headers=org_a.headers()), 404)
    assert_problem(await client.patch(url, json={"phone": None}, headers=org_a.headers()), 404)
    assert_problem(await client.delete(url, headers=org_a.headers()), 404)
    listed = await client.get("/api/v1/drivers", headers=org_a.headers())
    assert driver["id"] not in {d["id"] for d in listed.json()["items"]}
    kept = await client.get(url, params={"include_archived": "true"}, headers=org_a.headers())
    assert kept.json()["archived_at"] is not None
    history = await client.get(
        f"{url}/assignments", params={"include_archived": "true"}, headers=org_a.headers()
    )
    assert history.status_code == 200


async def test_driver_assignment_history(client, org_a, org_b):
    van = await make_vehicle(client, org_a)
    truck = await make_vehicle(client, org_a)
    ana = await make_driver(client, org_a)
    bao = await make_driver(client, org_a)

    async def put_driver(vehicle, driver_id):
        return await client.put(
            f"/api/v1/vehicles/{vehicle['id']}/driver",
            json={"driver_id": driver_id},
            headers=org_a.headers(),
        )

    assert (await put_driver(van, ana["id"])).status_code == 200
    assert (await put_driver(truck, ana["id"])).status_code == 200  # Ana moves to the truck
    assert (await put_driver(van, bao["id"])).status_code == 200
    van_now = await client.get(f"/api/v1/vehicles/{van['id']}", headers=org_a.headers())
    assert van_now.json()["current_driver_id"] == bao["id"]
    ana_now = await client.get(f"/api/v1/drivers/{ana['id']}", headers=org_a.headers())
    assert ana_now.json()["current_vehicle_id"] == truck["id"]
    history = await client.get(f"/api/v1/drivers/{ana['id']}/assignments", headers=org_a.headers())
    items = history.json()["items"]
    assert [i["vehicle_id"] for i in items] == [truck["id"], van["id"]]
    assert items[0]["ended_at"] is None
    assert items[1]["ended_at"] is not None
    response = await put_driver(van, None)
    assert response.status_code == 200
    assert response.json() is None
    van_history = await client.get(
        f"/api/v1/vehicles/{van['id']}/driver-assignments", headers=org_a.headers()
    )
    assert all(i["ended_at"] is not None for i in van_history.json()["items"])
    # Unknown or another org's driver: 422 naming driver_id.
    foreign = await make_driver(client, org_b)
    for driver_id in (str(uuid.uuid4()), foreign["id"]):
        assert_problem(await put_driver(van, driver_id), 422, "driver_id")


# -- devices ----------------------------------------------------------------------------------


async def test_device_create_returns_credentials_and_fits_the_vehicle(client, org_a, stack):
    vehicle = await make_vehicle(client, org_a)
    device = await make_device(client, org_a, vehicle_id=vehicle["id"], protocol="owntracks")
    assert device["vehicle_id"] == vehicle["id"]
    assert device["protocol"] == "owntracks"
    assert device["credentials"]["username"] == device["uid"]
    assert device["credentials"]["mqtt_port"] == stack.mosquitto.port
    assert device["credentials_reset_required"] is False
    assert device["http_key_required"] is True
    assert device["http_key_waived_at"] is None
    history = await client.get(
        f"/api/v1/devices/{device['id']}/assignments", headers=org_a.headers()
    )
    assert [i["vehicle_id"] for i in history.json()["items"]] == [vehicle["id"]]


async def test_the_http_key_is_shown_once_stored_hashed_and_rotated(
    client, org_a, vehicle_database, internal_headers
):
    import hashlib

    device = await make_device(client, org_a)
    key = device["credentials"]["http_key"]
    assert len(key) >= 32
    assert key != device["credentials"]["password"]
    read = await client.get(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert key not in read.text
    assert "http_key_hash" not in read.text
    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.json()["http_key_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert lookup.json()["http_key_required"] is True
    rotated = await client.post(
        f"/api/v1/devices/{device['id']}/credentials", headers=org_a.headers("dispatcher")
    )
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["http_key"]
    assert new_key != key
    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.json()["http_key_sha256"] == hashlib.sha256(new_key.encode()).hexdigest()


async def test_duplicate_uid_is_409_across_orgs(client, org_a, org_b):
    device = await make_device(client, org_a)
    body = {"uid": device["uid"], "name": "Copy"}
    assert_problem(await post(client, org_a, "/devices", body), 409, "uid")
    assert_problem(await post(client, org_b, "/devices", body), 409, "uid")


async def test_unknown_or_foreign_vehicle_id_is_422(client, org_a, org_b):
    foreign = await make_vehicle(client, org_b)
    for vehicle_id in (str(uuid.uuid4()), foreign["id"]):
        body = {"uid": new_uid(), "name": "GPS", "vehicle_id": vehicle_id}
        assert_problem(await post(client, org_a, "/devices", body), 422, "vehicle_id")
    device = await make_device(client, org_a)
    response = await client.patch(
        f"/api/v1/devices/{device['id']}",
        json={"vehicle_id": foreign["id"]},
        headers=org_a.headers(),
    )
    assert_problem(response, 422, "vehicle_id")
    # A refused create leaves no broker client behind: the uid can be registered.
    body = {"uid": new_uid(), "name": "GPS", "vehicle_id": str(uuid.uuid4())}
    assert_problem(await post(client, org_a, "/devices", body), 422, "vehicle_id")
    body.pop("vehicle_id")
    assert (await post(client, org_a, "/devices", body)).status_code == 201


@pytest.mark.parametrize(
    "uid",
    ["ab", "x" * 65, "a/b/c", "dev#1", "dev+1", "$SYS", "dev ice", "dév", "a\x00b", "", "../../x"],
)
async def test_unsafe_device_uid_is_422(client, org_a, uid):
    assert_problem(await post(client, org_a, "/devices", {"uid": uid, "name": "x"}), 422, "uid")


async def test_device_changes_are_published(client, org_a, device_events):
    vehicle = await make_vehicle(client, org_a, speed_limit_kph=80)
    device = await make_device(client, org_a)
    event = await device_events.wait_for(device["uid"], "upsert")
    assert event == {"action": "upsert", "uid": device["uid"], "device_id": device["id"]}
    url = f"/api/v1/devices/{device['id']}"
    await client.patch(url, json={"vehicle_id": vehicle["id"]}, headers=org_a.headers())
    await device_events.wait_for(device["uid"], "upsert")
    await client.patch(
        f"/api/v1/vehicles/{vehicle['id']}", json={"speed_limit_kph": 60}, headers=org_a.headers()
    )
    await device_events.wait_for(device["uid"], "upsert")
    await client.patch(url, json={"name": "Renamed"}, headers=org_a.headers())
    await device_events.wait_for(device["uid"], "upsert")
    await client.delete(url, headers=org_a.headers())
    await device_events.wait_for(device["uid"], "delete")


async def test_last_seen_at_comes_from_the_latest_positions_hash(client, org_a, redis):
    device = await make_device(client, org_a)
    other = await make_device(client, org_a)
    await redis.hset(
        latest_key(org_a.org_id),
        mapping={
            device["id"]: json.dumps({"recorded_at": "2026-11-22T08:15:30.250000+00:00"}),
            other["id"]: "not json",
        },
    )
    fetched = await client.get(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert fetched.json()["last_seen_at"].startswith("2026-11-22T08:15:30.25")
    listed = await client.get(
        "/api/v1/devices", params={"q": other["uid"]}, headers=org_a.headers()
    )
    assert listed.json()["items"][0]["last_seen_at"] is None


# -- roles, auth, hostile input -----------------------------------------------------------------


async def test_viewers_read_only(client, org_a):
    vehicle = await make_vehicle(client, org_a)
    driver = await make_driver(client, org_a)
    device = await make_device(client, org_a)
    viewer = org_a.headers("viewer")
    writes = [
        ("POST", "/api/v1/vehicles", {"name": "v", "plate": plate()}),
        ("PATCH", f"/api/v1/vehicles/{vehicle['id']}", {"name": "v"}),
        ("DELETE", f"/api/v1/vehicles/{vehicle['id']}", None),
        ("PUT", f"/api/v1/vehicles/{vehicle['id']}/driver", {"driver_id": driver["id"]}),
        ("POST", "/api/v1/drivers", {"name": "d", "licence_number": "L-VIEW"}),
        ("PATCH", f"/api/v1/drivers/{driver['id']}", {"name": "d"}),
        ("DELETE", f"/api/v1/drivers/{driver['id']}", None),
        ("POST", "/api/v1/devices", {"uid": new_uid(), "name": "d"}),
        ("PATCH", f"/api/v1/devices/{device['id']}", {"name": "d"}),
        ("DELETE", f"/api/v1/devices/{device['id']}", None),
        ("POST", f"/api/v1/devices/{device['id']}/credentials", None),
    ]
    for method, path, body in writes:
        response = await client.request(method, path, json=body, headers=viewer)
        assert_problem(response, 403)
    for path in ("/api/v1/vehicles", "/api/v1/drivers", "/api/v1/devices"):
        assert (await client.get(path, headers=viewer)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic YTpi"}],
)
async def test_no_or_bad_token_is_401(client, headers):
    for path in ("/api/v1/vehicles", "/api/v1/drivers", "/api/v1/devices"):
        assert_problem(await client.get(path, headers=headers), 401)


async def test_hostile_bodies_are_4xx_problems(client, org_a):
    headers = {**org_a.headers(), "content-type": "application/json"}
    for path in ("/api/v1/vehicles", "/api/v1/drivers", "/api/v1/devices"):
        for content in (
            b"{not json",
            b"[]",
            b"null",
            b'{"name": {"$gt": ""}}',
            b"\xff\xfe\x00",
            json.dumps({"name": "x" * 1_000_000, "plate": "A1"}).encode(),
            b"[" * 10_000,
        ):
            response = await client.post(path, content=content, headers=headers)
            assert 400 <= response.status_code < 500, (path, content[:20], response.text)
            assert response.headers["content-type"] == "application/problem+json"
    for path in ("/api/v1/vehicles/not-a-uuid", "/api/v1/devices/1%20OR%201=1"):
        assert_problem(await client.get(path, headers=org_a.headers()), 422)


# -- tenant isolation -----------------------------------------------------------------------------


async def test_another_orgs_records_are_not_found_on_every_route(client, org_a, org_b):
    vehicle = await make_vehicle(client, org_a)
    driver = await make_driver(client, org_a)
    device = await make_device(client, org_a, vehicle_id=vehicle["id"])
    own_driver = await make_driver(client, org_b)
    routes = [
        ("GET", f"/api/v1/vehicles/{vehicle['id']}", None),
        ("PATCH", f"/api/v1/vehicles/{vehicle['id']}", {"name": "stolen"}),
        ("DELETE", f"/api/v1/vehicles/{vehicle['id']}", None),
        ("PUT", f"/api/v1/vehicles/{vehicle['id']}/driver", {"driver_id": own_driver["id"]}),
        ("PUT", f"/api/v1/vehicles/{vehicle['id']}/driver", {"driver_id": None}),
        ("GET", f"/api/v1/vehicles/{vehicle['id']}/driver-assignments", None),
        ("GET", f"/api/v1/vehicles/{vehicle['id']}/device-assignments", None),
        ("GET", f"/api/v1/drivers/{driver['id']}", None),
        ("PATCH", f"/api/v1/drivers/{driver['id']}", {"name": "stolen"}),
        ("DELETE", f"/api/v1/drivers/{driver['id']}", None),
        ("GET", f"/api/v1/drivers/{driver['id']}/assignments", None),
        ("GET", f"/api/v1/devices/{device['id']}", None),
        ("PATCH", f"/api/v1/devices/{device['id']}", {"name": "stolen"}),
        ("PATCH", f"/api/v1/devices/{device['id']}", {"active": False}),
        ("DELETE", f"/api/v1/devices/{device['id']}", None),
        ("POST", f"/api/v1/devices/{device['id']}/credentials", None),
        ("GET", f"/api/v1/devices/{device['id']}/assignments", None),
    ]
    for method, path, body in routes:
        response = await client.request(method, path, json=body, headers=org_b.headers())
        assert_problem(response, 404)
    for path, own_id in (
        ("/api/v1/vehicles", vehicle["id"]),
        ("/api/v1/drivers", driver["id"]),
        ("/api/v1/devices", device["id"]),
    ):
        listed = await client.get(path, params={"limit": 200}, headers=org_b.headers())
        assert own_id not in {item["id"] for item in listed.json()["items"]}
        assert all(item["org_id"] == org_b.org_id for item in listed.json()["items"])
    filtered = await client.get(
        "/api/v1/devices", params={"vehicle_id": vehicle["id"]}, headers=org_b.headers()
    )
    assert filtered.json()["items"] == []
    # Nothing changed for org A.
    still = await client.get(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert still.json()["name"] == device["name"]
    assert still.json()["active"] is True
    assert (await client.get(f"/api/v1/vehicles/{vehicle['id']}", headers=org_a.headers())).json()[
        "archived_at"
    ] is None
