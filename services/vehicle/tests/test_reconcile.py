"""Reconcile: the broker's device clients brought back in line with the database."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from fleet_vehicle.broker.credentials import device_acls, device_role
from fleet_vehicle.broker.dynsec import acl_set


def new_uid() -> str:
    return f"rec-{uuid.uuid4().hex[:12]}"


async def create_device(client, org, **fields) -> dict:
    body = {"uid": new_uid(), "name": "Tracker", **fields}
    response = await client.post("/api/v1/devices", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    return response.json()


async def broker_clients(app) -> dict:
    return {c.username: c for c in await app.state.dynsec.list_clients()}


def run_reconcile_command(stack, database_url: str, device_group: str) -> dict:
    env = {
        **os.environ,
        "VEHICLE_DATABASE_URL": database_url,
        "REDIS_URL": stack.redis.url,
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(stack.mosquitto.port),
        "VEHICLE_MQTT_ADMIN_USERNAME": stack.mosquitto.admin_username,
        "VEHICLE_MQTT_ADMIN_PASSWORD": stack.mosquitto.admin_password,
        "VEHICLE_DEVICE_GROUP": device_group,
    }
    script = Path(sys.executable).parent / "fleet-vehicle-reconcile"
    result = subprocess.run(
        [str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The report is the JSON document at the end of stdout, after the log lines.
    report, _end = json.JSONDecoder().raw_decode(result.stdout, result.stdout.index("{\n"))
    return report


async def test_reconcile_command_repairs_device_clients_deleted_at_the_broker(
    app, client, org_a, stack, vehicle_database, device_group, mqtt_connect
):
    kept = await create_device(client, org_a)
    lost = await create_device(client, org_a)
    inactive_lost = await create_device(client, org_a, active=False)
    dynsec = app.state.dynsec
    for uid in (lost["uid"], inactive_lost["uid"]):
        await dynsec.command("deleteClient", username=uid)
        await dynsec.command("deleteRole", rolename=device_role(uid))
    # A device client the database does not know (say, a device deleted while the broker
    # was unreachable) and one whose device was archived.
    orphan = new_uid()
    await dynsec.command(
        "createClient", username=orphan, password="orphan-pw", groups=[{"groupname": device_group}]
    )
    # A device from before the ACLs were narrowed: its role allowed all of fleet/{uid}/#.
    widened = await create_device(client, org_a)
    wide_acls = [
        {"acltype": "publishClientSend", "topic": f"fleet/{widened['uid']}/#", "allow": True}
    ]
    await dynsec.command("modifyRole", rolename=device_role(widened["uid"]), acls=wide_acls)

    report = run_reconcile_command(stack, vehicle_database, device_group)

    assert set(report["recreated"]) >= {lost["uid"], inactive_lost["uid"]}
    assert widened["uid"] in report["roles_repaired"]
    assert kept["uid"] not in report["roles_repaired"]
    role = (await dynsec.command("getRole", rolename=device_role(widened["uid"])))["role"]
    assert acl_set(role["acls"]) == acl_set(device_acls(widened["uid"]))
    assert kept["uid"] not in report["recreated"]
    assert orphan in report["orphans_disabled"]
    clients = await broker_clients(app)
    assert clients[orphan].disabled
    assert clients[lost["uid"]].disabled is False
    assert clients[inactive_lost["uid"]].disabled is True
    # Service clients are left alone.
    for service_client in (stack.mosquitto.admin_username, stack.mosquitto.ingest_username):
        assert not clients[service_client].disabled
        assert device_group not in clients[service_client].groups
    _probe, rc = await mqtt_connect(
        stack.mosquitto.port, stack.mosquitto.ingest_username, stack.mosquitto.ingest_password
    )
    assert not rc.is_failure

    # The re-created device is flagged; its old password is refused; rotation clears the flag.
    url = f"/api/v1/devices/{lost['id']}"
    assert (await client.get(url, headers=org_a.headers())).json()["credentials_reset_required"]
    assert not (await client.get(f"/api/v1/devices/{kept['id']}", headers=org_a.headers())).json()[
        "credentials_reset_required"
    ]
    _probe, rc = await mqtt_connect(
        stack.mosquitto.port, lost["uid"], lost["credentials"]["password"]
    )
    assert rc.is_failure
    rotated = await client.post(f"{url}/credentials", headers=org_a.headers())
    assert rotated.status_code == 200
    probe, rc = await mqtt_connect(stack.mosquitto.port, lost["uid"], rotated.json()["password"])
    assert not rc.is_failure
    (granted,) = await probe.subscribe(f"fleet/{lost['uid']}/commands")
    assert not granted.is_failure
    assert not (await client.get(url, headers=org_a.headers())).json()["credentials_reset_required"]
    # The untouched device never noticed.
    _probe, rc = await mqtt_connect(
        stack.mosquitto.port, kept["uid"], kept["credentials"]["password"]
    )
    assert not rc.is_failure

    # A second run finds nothing to do (the orphan is disabled already).
    again = run_reconcile_command(stack, vehicle_database, device_group)
    assert not any(again.values()), again


async def test_start_up_with_the_broker_down_then_a_wiped_broker_is_repaired(
    migrated_database,
    make_vehicle_app,
    private_broker,
    make_org,
    mqtt_connect,
    device_events,
    internal_headers,
):
    org = make_org()
    database_url = migrated_database("vehicle")
    async with make_vehicle_app(database_url, private_broker, broker_startup_wait_s=0.5) as (
        app,
        client,
    ):
        # Start-up did not wait for the broker (it is started only below, so a start-up that
        # waited would never get here); readiness says what is missing.
        response = await client.get("/health/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["broker"].startswith("down")
        assert (await client.get("/health/liveness")).status_code == 200
        refused = await client.post(
            "/api/v1/devices", json={"uid": new_uid(), "name": "x"}, headers=org.headers()
        )
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"

        private_broker.start()

        assert await app.state.dynsec.wait_connected(15)
        assert (await client.get("/health/readiness")).status_code == 200
        device = await create_device(client, org)
        await device_events.wait_for(device["uid"], "upsert")  # the creation's own
        probe, rc = await mqtt_connect(
            private_broker.port, device["uid"], device["credentials"]["password"]
        )
        assert not rc.is_failure

        # Wipe the broker's dynamic-security state: stop, delete it, re-initialise.
        private_broker.stop()
        await probe.wait_disconnected()
        private_broker.dynsec_file.unlink()
        private_broker.start()

        # The service reconnects and reconciles by itself, announcing the re-created device.
        await device_events.wait_for(device["uid"], "upsert", timeout_s=20)
        fetched = await client.get(f"/api/v1/devices/{device['id']}", headers=org.headers())
        assert fetched.json()["credentials_reset_required"] is True
        _probe, rc = await mqtt_connect(
            private_broker.port, device["uid"], device["credentials"]["password"]
        )
        assert rc.is_failure
        rotated = await client.post(
            f"/api/v1/devices/{device['id']}/credentials", headers=org.headers()
        )
        assert rotated.status_code == 200
        _probe, rc = await mqtt_connect(
            private_broker.port, device["uid"], rotated.json()["password"]
        )
        assert not rc.is_failure
        # The re-initialised broker's ingest client was not touched.
        _probe, rc = await mqtt_connect(
            private_broker.port, private_broker.ingest_username, private_broker.ingest_password
        )
        assert not rc.is_failure
        found = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
        assert found.status_code == 200
