"""Teltonika and GT06 trackers: devices without a broker client (issue 15)."""

import random

import pytest

from fleet_vehicle.broker.dynsec import DynsecCommandError
from fleet_vehicle.broker.reconcile import reconcile


def new_imei() -> str:
    return "35" + "".join(random.choice("0123456789") for _ in range(13))


async def broker_client(app, uid: str) -> dict | None:
    try:
        return (await app.state.dynsec.command("getClient", username=uid))["client"]
    except DynsecCommandError as exc:
        if exc.not_found:
            return None
        raise


async def create(client, org, protocol: str, **fields) -> dict:
    body = {"uid": new_imei(), "name": "Hardware tracker", "protocol": protocol, **fields}
    response = await client.post("/api/v1/devices", json=body, headers=org.headers("dispatcher"))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("protocol", ["teltonika", "gt06"])
async def test_a_tcp_tracker_gets_no_broker_client_and_is_found_by_its_imei(
    app, client, org_a, internal_headers, protocol
):
    device = await create(client, org_a, protocol)
    assert device["credentials"] is None
    assert device["protocol"] == protocol
    assert await broker_client(app, device["uid"]) is None

    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.status_code == 200
    assert lookup.json()["protocol"] == protocol
    assert lookup.json()["active"] is True

    rotated = await client.post(
        f"/api/v1/devices/{device['id']}/credentials", headers=org_a.headers("dispatcher")
    )
    assert rotated.status_code == 409
    assert rotated.headers["content-type"].startswith("application/problem+json")

    # Deactivating and deleting need no broker (there is no client to change).
    patched = await client.patch(
        f"/api/v1/devices/{device['id']}", json={"active": False}, headers=org_a.headers()
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["active"] is False
    deleted = await client.delete(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert deleted.status_code == 204
    gone = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert gone.status_code == 404


async def test_a_device_cannot_move_between_broker_and_tcp_protocols(app, client, org_a):
    tracker = await create(client, org_a, "teltonika")
    to_mqtt = await client.patch(
        f"/api/v1/devices/{tracker['id']}", json={"protocol": "mqtt"}, headers=org_a.headers()
    )
    assert to_mqtt.status_code == 409
    to_gt06 = await client.patch(
        f"/api/v1/devices/{tracker['id']}", json={"protocol": "gt06"}, headers=org_a.headers()
    )
    assert to_gt06.status_code == 200, to_gt06.text

    phone = await create(client, org_a, "mqtt")
    assert phone["credentials"]["username"] == phone["uid"]
    to_tcp = await client.patch(
        f"/api/v1/devices/{phone['id']}", json={"protocol": "gt06"}, headers=org_a.headers()
    )
    assert to_tcp.status_code == 409


async def test_reconcile_creates_no_broker_client_for_a_tcp_tracker(app, client, org_a):
    tracker = await create(client, org_a, "gt06")
    report = await reconcile(app.state.sessionmaker, app.state.device_broker)
    assert tracker["uid"] not in report.recreated
    assert await broker_client(app, tracker["uid"]) is None
