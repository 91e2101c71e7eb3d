"""The sweep of `queued` commands (`send_queued`): one created while the broker was down is
sent once the broker is back, without the device announcing itself; and a tracker command
whose push reached Redis but whose `sent` never reached the database (it was down at that
moment) is marked `sent` by the sweep without being pushed a second time."""

import asyncio
import json
import uuid
from datetime import timedelta

from fleet_common.tracker_commands import queue_key
from fleet_vehicle.commands.service import QUEUED_GRACE_S, now
from fleet_vehicle.models import CommandStatus, DeviceCommand

from .test_commands import command_of, make_device, send, until_status


async def test_a_command_created_while_the_broker_is_down_is_sent_when_it_is_back(
    migrated_database, make_vehicle_app, private_broker, make_org, mqtt_connect
):
    org = make_org()
    private_broker.start()
    async with make_vehicle_app(migrated_database("vehicle"), private_broker) as (app, client):
        assert await app.state.dynsec.wait_connected(15)
        assert await app.state.downlink.mqtt.wait_connected(15)
        device = await make_device(client, org)

        private_broker.stop()
        async with asyncio.timeout(15):
            while app.state.downlink.mqtt.connected:  # noqa: ASYNC110 - paho state, no event
                await asyncio.sleep(0.05)
        created = await send(client, org, device, {"type": "request_position"})
        assert created.status_code == 202, created.text
        command = created.json()
        assert (command["status"], command["send_count"]) == ("queued", 0)

        private_broker.start()
        # Subscribed, but never `online` on its status topic: only the sweep sends it.
        probe, rc = await mqtt_connect(
            private_broker.port, device["uid"], device["credentials"]["password"]
        )
        assert not rc.is_failure
        (granted,) = await probe.subscribe(f"fleet/{device['uid']}/commands")
        assert not granted.is_failure
        message = await probe.next_message(timeout_s=QUEUED_GRACE_S + 20)
        assert json.loads(message.payload)["id"] == command["id"]
        sent = await until_status(client, org, device, command["id"], "sent")
        assert sent["send_count"] == 1
        assert sent["sent_at"] is not None
        await probe.close()


async def test_a_tracker_command_pushed_but_not_marked_sent_is_not_pushed_again(
    app, client, org_a, redis
):
    device = await make_device(
        client, org_a, protocol="teltonika", uid=f"35{uuid.uuid4().int % 10**13:013d}"
    )
    # What a request leaves when the database went away between its push and its `sent`:
    # the command `queued` in the database and in the tracker's Redis queue.
    async with app.state.sessionmaker() as session:
        command = DeviceCommand(
            id=uuid.uuid4(),
            org_id=uuid.UUID(org_a.org_id),
            device_id=uuid.UUID(device["id"]),
            uid=device["uid"],
            type="engine_resume",
            params={},
            status=CommandStatus.queued,
            created_by=uuid.uuid4(),
            created_at=now() - timedelta(seconds=QUEUED_GRACE_S + 1),
            expires_at=now() + timedelta(minutes=10),
            send_count=0,
        )
        session.add(command)
        await session.commit()
        await app.state.downlink.publish("teltonika", command)

    # The sweep (every 0.5 s here) finds it `queued` and hands it on: marked `sent`, and
    # still once in the queue, which a tracker would otherwise get (and obey) twice.
    sent = await until_status(client, org_a, device, str(command.id), "sent")
    assert sent["send_count"] == 1
    queued = await redis.lrange(queue_key(device["uid"]), 0, -1)
    assert [json.loads(raw)["id"] for raw in queued] == [str(command.id)]
    await asyncio.sleep(1.5)  # more sweeps: nothing changes
    assert await redis.llen(queue_key(device["uid"])) == 1
    assert (await command_of(client, org_a, device, str(command.id)))["send_count"] == 1
