"""Device credentials against the project's real Mosquitto (dynamic security)."""

import uuid

import pytest


def new_uid(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_device(client, org, **fields) -> dict:
    body = {"uid": new_uid(), "name": "Tracker", **fields}
    response = await client.post("/api/v1/devices", json=body, headers=org.headers("dispatcher"))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def ingest(stack, mqtt_connect):
    """The location service's ingest client, subscribed to every device topic."""
    probe, rc = await mqtt_connect(
        stack.mosquitto.port, stack.mosquitto.ingest_username, stack.mosquitto.ingest_password
    )
    assert not rc.is_failure
    for topic in ("fleet/#", "owntracks/#"):
        (granted,) = await probe.subscribe(topic)
        assert not granted.is_failure
    return probe


async def test_new_device_connects_and_its_messages_reach_the_ingest_subscriber(
    client, org_a, stack, ingest, mqtt_connect
):
    device = await create_device(client, org_a)
    credentials = device["credentials"]
    assert credentials["username"] == device["uid"]
    assert credentials["mqtt_host"] == "127.0.0.1"
    assert credentials["mqtt_port"] == stack.mosquitto.port
    assert len(credentials["password"]) >= 40

    probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], credentials["password"])
    assert not rc.is_failure, rc
    await probe.publish(f"fleet/{device['uid']}/telemetry", b'{"lat": 1, "lon": 2}')
    message = await ingest.next_message()
    assert message.topic == f"fleet/{device['uid']}/telemetry"
    assert message.payload == b'{"lat": 1, "lon": 2}'
    await probe.publish(f"owntracks/{device['uid']}/phone", b'{"_type": "location"}')
    assert (await ingest.next_message()).topic == f"owntracks/{device['uid']}/phone"

    (granted,) = await probe.subscribe(f"fleet/{device['uid']}/commands")
    assert not granted.is_failure


async def test_the_password_is_never_returned_again(client, org_a):
    device = await create_device(client, org_a)
    fetched = await client.get(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert "credentials" not in fetched.json()
    assert device["credentials"]["password"] not in fetched.text


async def test_wrong_password_is_refused(client, org_a, stack, mqtt_connect):
    device = await create_device(client, org_a)
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], "not-the-password")
    assert rc.is_failure
    _probe, rc = await mqtt_connect(stack.mosquitto.port, "no-such-device", "whatever")
    assert rc.is_failure


async def test_device_cannot_publish_into_another_devices_topics(
    client, org_a, org_b, stack, ingest, mqtt_connect
):
    device_a = await create_device(client, org_a)
    device_b = await create_device(client, org_b)
    probe, rc = await mqtt_connect(
        stack.mosquitto.port, device_a["uid"], device_a["credentials"]["password"]
    )
    assert not rc.is_failure
    # The broker acknowledges a forbidden QoS 1 publish but drops it. A marker published
    # afterwards on the same connection arrives after it would have: seeing the marker first
    # proves the forbidden message was not delivered, without sleeping.
    for topic in (
        f"fleet/{device_b['uid']}/telemetry",
        f"fleet/{device_b['uid']}/status",
        f"owntracks/{device_b['uid']}/phone",
        "fleet/telemetry",
        "other/topic",
    ):
        await probe.publish(topic, b"forged")
    await probe.publish(f"fleet/{device_a['uid']}/telemetry", b"marker")
    message = await ingest.next_message()
    assert (message.topic, message.payload) == (f"fleet/{device_a['uid']}/telemetry", b"marker")


@pytest.mark.parametrize(
    "topic",
    [
        "fleet/{b}/commands",
        "fleet/{b}/telemetry",
        "fleet/{b}/#",
        "owntracks/{b}/#",
        "fleet/+/commands",
        "fleet/#",
        "#",
        "fleet/{a}/#",
        "fleet/{a}/telemetry",
        "$CONTROL/dynamic-security/v1/response",
    ],
)
async def test_device_cannot_subscribe_beyond_its_command_topic(
    client, org_a, stack, mqtt_connect, topic
):
    device_a = await create_device(client, org_a)
    probe, rc = await mqtt_connect(
        stack.mosquitto.port, device_a["uid"], device_a["credentials"]["password"]
    )
    assert not rc.is_failure
    (reason,) = await probe.subscribe(topic.format(a=device_a["uid"], b="someone-else"))
    assert reason.is_failure, reason


async def test_rotation_kicks_the_old_session_refuses_the_old_password_accepts_the_new(
    client, org_a, stack, mqtt_connect, device_events
):
    device = await create_device(client, org_a)
    old = device["credentials"]["password"]
    connected, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], old)
    assert not rc.is_failure

    response = await client.post(
        f"/api/v1/devices/{device['id']}/credentials", headers=org_a.headers("dispatcher")
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["username"] == device["uid"]
    assert rotated["password"] != old
    await device_events.wait_for(device["uid"], "upsert")

    await connected.wait_disconnected()
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], old)
    assert rc.is_failure
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], rotated["password"])
    assert not rc.is_failure


async def test_delete_disconnects_a_connected_device_that_cannot_reconnect(
    client, org_a, stack, mqtt_connect, device_events, internal_headers
):
    device = await create_device(client, org_a)
    password = device["credentials"]["password"]
    connected, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], password)
    assert not rc.is_failure

    response = await client.delete(
        f"/api/v1/devices/{device['id']}", headers=org_a.headers("dispatcher")
    )
    assert response.status_code == 204
    await connected.wait_disconnected()
    assert (await device_events.wait_for(device["uid"], "delete"))["device_id"] == device["id"]
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], password)
    assert rc.is_failure
    # Gone for the API (404, out of the list, nothing more to do to it), kept for history.
    url = f"/api/v1/devices/{device['id']}"
    for method, path in (
        ("GET", url),
        ("PATCH", url),
        ("DELETE", url),
        ("POST", f"{url}/credentials"),
        ("GET", f"{url}/assignments"),
    ):
        body = {"name": "x"} if method == "PATCH" else None
        gone = await client.request(method, path, json=body, headers=org_a.headers("dispatcher"))
        assert gone.status_code == 404, (method, path, gone.text)
    listed = await client.get("/api/v1/devices", headers=org_a.headers())
    assert device["id"] not in {d["id"] for d in listed.json()["items"]}
    kept = await client.get(url, params={"include_archived": "true"}, headers=org_a.headers())
    assert kept.json()["archived_at"] is not None
    # The location service's lookup no longer knows it: its positions are refused.
    lookup = await client.get(f"/internal/devices/{device['uid']}", headers=internal_headers)
    assert lookup.status_code == 404


async def test_disabling_disconnects_and_enabling_lets_the_device_back(
    client, org_a, stack, mqtt_connect
):
    device = await create_device(client, org_a)
    password = device["credentials"]["password"]
    connected, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], password)
    assert not rc.is_failure
    url = f"/api/v1/devices/{device['id']}"
    response = await client.patch(url, json={"active": False}, headers=org_a.headers())
    assert response.status_code == 200
    assert response.json()["active"] is False
    await connected.wait_disconnected()
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], password)
    assert rc.is_failure

    response = await client.patch(url, json={"active": True}, headers=org_a.headers())
    assert response.status_code == 200
    _probe, rc = await mqtt_connect(stack.mosquitto.port, device["uid"], password)
    assert not rc.is_failure


async def test_a_uid_held_by_a_service_client_is_refused(client, org_a, stack):
    for uid in (stack.mosquitto.ingest_username, stack.mosquitto.admin_username):
        response = await client.post(
            "/api/v1/devices", json={"uid": uid, "name": "Impostor"}, headers=org_a.headers()
        )
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
