"""Downlink commands over the real broker: the whole life cycle, offline devices, expiry,
the ACL on answers, engine_stop's guard and bad input."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from fleet_common.redis import EVENTS_STREAM, latest_key

from .test_api import assert_problem, make_vehicle, new_uid, post


async def make_device(client, org, **fields) -> dict:
    body = {"uid": new_uid(), "name": "GPS", "protocol": "mqtt", **fields}
    response = await post(client, org, "/devices", body)
    assert response.status_code == 201, response.text
    return response.json()


async def send(client, org, device, body, role="dispatcher"):
    return await client.post(
        f"/api/v1/devices/{device['id']}/commands", json=body, headers=org.headers(role)
    )


async def command_of(client, org, device, command_id) -> dict:
    listed = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=org.headers())
    assert listed.status_code == 200, listed.text
    return next(c for c in listed.json()["items"] if c["id"] == command_id)


async def until_status(client, org, device, command_id, status, timeout_s=15.0) -> dict:
    async with asyncio.timeout(timeout_s):
        while True:
            command = await command_of(client, org, device, command_id)
            if command["status"] == status:
                return command
            await asyncio.sleep(0.1)


async def online_device(stack, mqtt_connect, device):
    """The device connected, subscribed to its command topic, and announced online."""
    uid = device["uid"]
    probe, rc = await mqtt_connect(stack.mosquitto.port, uid, device["credentials"]["password"])
    assert not rc.is_failure
    (granted,) = await probe.subscribe(f"fleet/{uid}/commands")
    assert not granted.is_failure
    await probe.publish(f"fleet/{uid}/status", "online")
    return probe


async def command_results(redis, command_id: str, count: int, timeout_s=15.0) -> list[dict]:
    """The command's `command_result` events, once there are `count` of them: the service
    raises an event just after it commits the status the API already shows."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = []
            for _id, fields in await redis.xrange(EVENTS_STREAM):
                event = json.loads(fields[b"event"])
                details = event["details"]
                if event["type"] == "command_result" and details["command_id"] == command_id:
                    found.append(event)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


async def test_life_cycle_over_mqtt(client, org_a, stack, mqtt_connect, redis):
    vehicle = await make_vehicle(client, org_a, group="North")
    device = await make_device(client, org_a, vehicle_id=vehicle["id"])
    probe = await online_device(stack, mqtt_connect, device)

    response = await send(
        client, org_a, device, {"type": "set_interval", "params": {"interval_s": 5}}
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["status"] == "sent"
    assert command["created_by"] == org_a.user_ids["dispatcher"]

    message = await probe.next_message()
    assert message.topic == f"fleet/{device['uid']}/commands"
    assert message.qos == 1
    received = json.loads(message.payload)
    assert set(received) == {"id", "type", "params", "ts"}
    assert received["id"] == command["id"]
    assert received["type"] == "set_interval"
    assert received["params"] == {"interval_s": 5}

    result_topic = f"fleet/{device['uid']}/commands/result"
    await probe.publish(result_topic, json.dumps({"id": command["id"], "status": "delivered"}))
    delivered = await until_status(client, org_a, device, command["id"], "delivered")
    assert delivered["delivered_at"] is not None
    await probe.publish(
        result_topic, json.dumps({"id": command["id"], "status": "acknowledged", "message": "ok"})
    )
    done = await until_status(client, org_a, device, command["id"], "acknowledged")
    assert done["message"] == "ok"
    assert done["completed_at"] is not None
    # A late or repeated answer changes nothing.
    await probe.publish(result_topic, json.dumps({"id": command["id"], "status": "failed"}))
    await probe.publish(result_topic, b"not json")

    events = await command_results(redis, command["id"], 2)
    assert [e["details"]["status"] for e in events] == ["delivered", "acknowledged"]
    assert events[-1]["vehicle_id"] == vehicle["id"]
    assert events[-1]["device_id"] == device["id"]
    assert events[-1]["vehicle_group"] == "North"
    assert events[-1]["details"]["command_type"] == "set_interval"
    assert (await command_of(client, org_a, device, command["id"]))["status"] == "acknowledged"


async def test_an_offline_device_gets_its_commands_when_it_comes_online(
    client, org_a, stack, mqtt_connect
):
    device = await make_device(client, org_a)
    first = (await send(client, org_a, device, {"type": "reboot"})).json()
    second = (await send(client, org_a, device, {"type": "request_position"})).json()
    assert first["status"] == second["status"] == "sent"  # the broker has them; nobody else

    probe = await online_device(stack, mqtt_connect, device)
    got = [json.loads((await probe.next_message()).payload) for _ in range(2)]
    assert [g["id"] for g in got] == [first["id"], second["id"]]
    command = await command_of(client, org_a, device, first["id"])
    # Sent at creation, and again for `online` (at least once: the status message is QoS 1,
    # and is handled again if the service's connection drops before its PUBACK).
    assert command["send_count"] >= 2

    # Answered commands are not sent again on the next reconnection.
    result_topic = f"fleet/{device['uid']}/commands/result"
    for c in (first, second):
        await probe.publish(result_topic, json.dumps({"id": c["id"], "status": "acknowledged"}))
    await until_status(client, org_a, device, second["id"], "acknowledged")
    third = (await send(client, org_a, device, {"type": "reboot"})).json()
    assert json.loads((await probe.next_message()).payload)["id"] == third["id"]
    await probe.publish(f"fleet/{device['uid']}/status", "online")
    assert json.loads((await probe.next_message()).payload)["id"] == third["id"]
    with pytest.raises(TimeoutError):
        await probe.next_message(timeout_s=1.0)


async def test_a_command_expires_unanswered(client, org_a, stack, mqtt_connect, redis):
    device = await make_device(client, org_a)
    body = {"type": "request_position", "expires_in_s": 1}
    command = (await send(client, org_a, device, body)).json()
    expired = await until_status(client, org_a, device, command["id"], "expired")
    assert expired["completed_at"] is not None
    [event] = await command_results(redis, command["id"], 1)
    assert event["details"]["status"] == "expired"
    # Coming online later, the device is not sent it, and its answer is too late.
    probe = await online_device(stack, mqtt_connect, device)
    with pytest.raises(TimeoutError):
        await probe.next_message(timeout_s=1.0)
    await probe.publish(
        f"fleet/{device['uid']}/commands/result",
        json.dumps({"id": command["id"], "status": "acknowledged"}),
    )
    marker = (await send(client, org_a, device, {"type": "reboot"})).json()
    await probe.next_message()
    await probe.publish(
        f"fleet/{device['uid']}/commands/result",
        json.dumps({"id": marker["id"], "status": "acknowledged"}),
    )
    await until_status(client, org_a, device, marker["id"], "acknowledged")
    assert (await command_of(client, org_a, device, command["id"]))["status"] == "expired"


async def test_a_device_cannot_answer_for_another_device(client, org_a, org_b, stack, mqtt_connect):
    device_a = await make_device(client, org_a)
    device_b = await make_device(client, org_b)
    probe_a = await online_device(stack, mqtt_connect, device_a)
    probe_b = await online_device(stack, mqtt_connect, device_b)
    own = (await send(client, org_a, device_a, {"type": "reboot"})).json()
    assert json.loads((await probe_a.next_message()).payload)["id"] == own["id"]
    theirs = (await send(client, org_b, device_b, {"type": "reboot"})).json()
    assert json.loads((await probe_b.next_message()).payload)["id"] == theirs["id"]

    # Device A's credentials on a second connection (Mosquitto 2.0.11 stops delivering to a
    # connection once it refused one of its publishes, so the forger is not the listener).
    forger, rc = await mqtt_connect(
        stack.mosquitto.port, device_a["uid"], device_a["credentials"]["password"]
    )
    assert not rc.is_failure
    forged = json.dumps({"id": theirs["id"], "status": "acknowledged"})
    # On the other device's topic the ACL drops it; on its own topic it is not its command;
    # and it may not publish commands, not even to itself.
    await forger.publish(f"fleet/{device_b['uid']}/commands/result", forged)
    await forger.publish(f"fleet/{device_a['uid']}/commands/result", forged)
    await forger.publish(f"fleet/{device_a['uid']}/commands", b'{"id": "forged"}')
    # Its answer to its own command, published after those on the same connection, is
    # handled after them: once it is, the forgeries have had their chance.
    await forger.publish(
        f"fleet/{device_a['uid']}/commands/result",
        json.dumps({"id": own["id"], "status": "acknowledged"}),
    )
    await until_status(client, org_a, device_a, own["id"], "acknowledged")
    assert (await command_of(client, org_b, device_b, theirs["id"]))["status"] == "sent"
    marker = (await send(client, org_a, device_a, {"type": "reboot"})).json()
    assert json.loads((await probe_a.next_message()).payload)["id"] == marker["id"]
    (refused,) = await forger.subscribe(f"fleet/{device_b['uid']}/commands")
    assert refused.is_failure


async def test_engine_stop_needs_a_stopped_vehicle_or_force(client, org_a, redis, app):
    vehicle = await make_vehicle(client, org_a)
    device = await make_device(client, org_a, vehicle_id=vehicle["id"])
    refused = await send(client, org_a, device, {"type": "engine_stop"})
    assert "no position" in assert_problem(refused, 409)["detail"]

    def latest(speed_kph: float) -> str:
        recorded_at = datetime.now(UTC).isoformat()
        return json.dumps({"recorded_at": recorded_at, "speed_kph": speed_kph})

    await redis.hset(latest_key(org_a.org_id), device["id"], latest(62.0))
    moving = await send(client, org_a, device, {"type": "engine_stop"})
    assert "moving" in assert_problem(moving, 409)["detail"]
    forced = await send(client, org_a, device, {"type": "engine_stop", "force": True})
    assert forced.status_code == 202, forced.text
    assert forced.json()["force"] is True
    await redis.hset(latest_key(org_a.org_id), device["id"], latest(0.0))
    stopped = await send(client, org_a, device, {"type": "engine_stop"})
    assert stopped.status_code == 202, stopped.text
    assert stopped.json()["force"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "self_destruct"}, 422),
        ({"type": "set_interval"}, 422),
        ({"type": "set_interval", "params": {"interval_s": 0}}, 422),
        ({"type": "set_interval", "params": {"interval_s": "fast"}}, 422),
        ({"type": "reboot", "params": {"now": True}}, 422),
        ({"type": "custom", "params": {"payload": "x" * 1001}}, 422),
        ({"type": "custom", "params": {"payload": "setparam 1000:5"}, "expires_in_s": 0}, 422),
        ({"type": "reboot", "extra": 1}, 422),
    ],
)
async def test_bad_commands_are_refused(client, org_a, body, status):
    device = await make_device(client, org_a)
    assert_problem(await send(client, org_a, device, body), status)


async def test_who_may_send_and_to_which_device(client, org_a, org_b):
    device = await make_device(client, org_a)
    assert_problem(await send(client, org_a, device, {"type": "reboot"}, role="viewer"), 403)
    assert_problem(await send(client, org_b, device, {"type": "reboot"}), 404)
    other = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=org_b.headers())
    assert_problem(other, 404)
    phone = await make_device(client, org_a, protocol="osmand")
    assert_problem(await send(client, org_a, phone, {"type": "reboot"}), 409)
    await client.delete(f"/api/v1/devices/{device['id']}", headers=org_a.headers())
    assert_problem(await send(client, org_a, device, {"type": "reboot"}), 404)
    unknown = {"id": str(uuid.uuid4()), "type": "reboot"}
    assert_problem(await send(client, org_a, unknown, {"type": "reboot"}), 404)
