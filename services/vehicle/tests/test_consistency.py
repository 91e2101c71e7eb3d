"""What keeps the location service's cache, the broker and the database consistent: the
`fleet:devices` messages a vehicle change sends, the clean-up of a device creation whose
commit fails after its broker client was made, and reconcile's repairs of a client."""

import asyncio
import uuid

import asyncpg

from fleet_vehicle.broker.credentials import device_role
from fleet_vehicle.broker.dynsec import DynsecCommandError
from fleet_vehicle.broker.reconcile import reconcile


async def eventually(check, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


def new_uid() -> str:
    return f"con-{uuid.uuid4().hex[:12]}"


async def make_vehicle(client, org, **fields) -> dict:
    body = {"name": "Truck", "plate": f"C{uuid.uuid4().hex[:7].upper()}", **fields}
    response = await client.post("/api/v1/vehicles", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    return response.json()


async def make_device(client, org, **fields) -> dict:
    body = {"uid": new_uid(), "name": "GPS", **fields}
    response = await client.post("/api/v1/devices", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    return response.json()


async def lookup(client, internal_headers, uid: str) -> dict:
    response = await client.get(f"/internal/devices/{uid}", headers=internal_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def broker_client(app, uid: str) -> dict | None:
    try:
        return (await app.state.dynsec.command("getClient", username=uid))["client"]
    except DynsecCommandError as exc:
        if exc.not_found:
            return None
        raise


async def announced_upserts(device_events, uids: set[str]) -> dict[str, str]:
    """uid -> device id of every message until each of `uids` was announced, in any order."""
    announced: dict[str, str] = {}
    async with asyncio.timeout(5):
        while not uids <= set(announced):
            event = await device_events.next()
            assert event["action"] == "upsert", event
            announced[event["uid"]] = event["device_id"]
    return announced


async def test_a_group_change_drops_the_cached_devices_of_the_vehicle(
    client, org_a, device_events, internal_headers
):
    vehicle = await make_vehicle(client, org_a, group="North")
    devices = [await make_device(client, org_a, vehicle_id=vehicle["id"]) for _ in range(2)]
    for device in devices:
        assert (await lookup(client, internal_headers, device["uid"]))["vehicle_group"] == "North"
        await device_events.wait_for(device["uid"], "upsert")  # their creation's

    url = f"/api/v1/vehicles/{vehicle['id']}"
    response = await client.patch(url, json={"group": "South"}, headers=org_a.headers())
    assert response.status_code == 200
    announced = await announced_upserts(device_events, {d["uid"] for d in devices})
    assert announced == {d["uid"]: d["id"] for d in devices}
    for device in devices:
        assert (await lookup(client, internal_headers, device["uid"]))["vehicle_group"] == "South"
    # Out of every group: the lookup says so.
    await client.patch(url, json={"group": None}, headers=org_a.headers())
    await device_events.wait_for(devices[0]["uid"], "upsert")
    assert (await lookup(client, internal_headers, devices[0]["uid"]))["vehicle_group"] is None


async def test_archiving_a_vehicle_announces_each_of_its_devices(
    client, org_a, device_events, internal_headers
):
    vehicle = await make_vehicle(client, org_a, group="West", speed_limit_kph=50)
    fitted = [await make_device(client, org_a, vehicle_id=vehicle["id"]) for _ in range(2)]
    other = await make_device(client, org_a)
    for device in [*fitted, other]:
        await device_events.wait_for(device["uid"], "upsert")

    response = await client.delete(f"/api/v1/vehicles/{vehicle['id']}", headers=org_a.headers())
    assert response.status_code == 204
    announced = await announced_upserts(device_events, {d["uid"] for d in fitted})
    assert other["uid"] not in announced, "a device of another vehicle was announced"
    for device in fitted:
        found = await lookup(client, internal_headers, device["uid"])
        assert found["vehicle_id"] is None
        assert found["vehicle_group"] is None
        assert found["speed_limit_kph"] is None


async def test_a_device_whose_commit_fails_after_the_broker_step_leaves_no_client(
    app, client, org_a, vehicle_database, mqtt_connect, stack
):
    """A real commit failure: a deadlock. Another writer holds the vehicle's row lock that
    the new device's assignment needs at commit, then waits for the new device's uid; the
    device's transaction (first to wait) is the deadlock victim, after its broker client was
    created. The client must be deleted and the answer a retryable 503."""
    vehicle = await make_vehicle(client, org_a)
    uid = new_uid()
    dsn = vehicle_database.replace("postgresql+asyncpg://", "postgresql://")
    other = await asyncpg.connect(dsn)
    watcher = await asyncpg.connect(dsn)
    try:
        transaction = other.transaction()
        await transaction.start()
        # This writer never runs the deadlock check first: the device's transaction does.
        await other.execute("SET LOCAL deadlock_timeout = '60s'")
        await other.execute("SELECT 1 FROM vehicles WHERE id = $1 FOR UPDATE", vehicle["id"])
        creating = asyncio.create_task(
            client.post(
                "/api/v1/devices",
                json={"uid": uid, "name": "GPS", "vehicle_id": vehicle["id"]},
                headers=org_a.headers(),
            )
        )

        async def commit_waits() -> bool:
            # The broker client exists and the device's commit waits for the row lock.
            return await broker_client(app, uid) is not None and bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )

        await eventually(commit_waits)
        await other.execute(
            "INSERT INTO devices (id, org_id, uid, name, protocol, active) "
            "VALUES ($1, $2, $3, 'rival', 'mqtt', true)",
            uuid.uuid4(),
            uuid.UUID(org_a.org_id),
            uid,
        )
        await transaction.rollback()
        response = await asyncio.wait_for(creating, 10)
    finally:
        await other.close()
        await watcher.close()

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await broker_client(app, uid) is None
    listed = await client.get("/api/v1/devices", params={"q": uid}, headers=org_a.headers())
    assert listed.json()["total"] == 0
    # The uid is free again, on both sides.
    device = await make_device(client, org_a, uid=uid, vehicle_id=vehicle["id"])
    _probe, rc = await mqtt_connect(stack.mosquitto.port, uid, device["credentials"]["password"])
    assert not rc.is_failure


async def test_reconcile_repairs_a_lost_role_and_re_enables_an_active_device(
    app, client, org_a, stack, mqtt_connect
):
    lost_role = await make_device(client, org_a)
    disabled = await make_device(client, org_a)
    still_off = await make_device(client, org_a, active=False)
    dynsec = app.state.dynsec
    await dynsec.command(
        "removeClientRole", username=lost_role["uid"], rolename=device_role(lost_role["uid"])
    )
    await dynsec.command("disableClient", username=disabled["uid"])
    # Disabled at the broker behind our back, the active device cannot connect.
    _probe, rc = await mqtt_connect(
        stack.mosquitto.port, disabled["uid"], disabled["credentials"]["password"]
    )
    assert rc.is_failure

    report = await reconcile(app.state.sessionmaker, app.state.device_broker)

    assert lost_role["uid"] in report.roles_repaired
    assert disabled["uid"] in report.enabled
    assert still_off["uid"] not in report.enabled
    assert (await broker_client(app, still_off["uid"]))["disabled"] is True
    # The repaired device publishes to its own topic again and it reaches the ingest client.
    ingest, rc = await mqtt_connect(
        stack.mosquitto.port, stack.mosquitto.ingest_username, stack.mosquitto.ingest_password
    )
    assert not rc.is_failure
    await ingest.subscribe(f"fleet/{lost_role['uid']}/#")
    device, rc = await mqtt_connect(
        stack.mosquitto.port, lost_role["uid"], lost_role["credentials"]["password"]
    )
    assert not rc.is_failure
    await device.publish(f"fleet/{lost_role['uid']}/telemetry", b'{"lat": 1, "lon": 2}')
    message = await ingest.next_message()
    assert message.topic == f"fleet/{lost_role['uid']}/telemetry"
    (granted,) = await device.subscribe(f"fleet/{lost_role['uid']}/commands")
    assert not granted.is_failure
    _probe, rc = await mqtt_connect(
        stack.mosquitto.port, disabled["uid"], disabled["credentials"]["password"]
    )
    assert not rc.is_failure
    # Nothing left to repair for these devices.
    again = await reconcile(app.state.sessionmaker, app.state.device_broker)
    assert not {lost_role["uid"], disabled["uid"]} & {*again.roles_repaired, *again.enabled}
