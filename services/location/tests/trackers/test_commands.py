"""Downlink commands to hardware trackers end to end: `POST /devices/{id}/commands` on the
real vehicle service process, through Redis to the location app holding the tracker's TCP
connection, the Codec 12 / 0x80 frame read by a simulated device, its answer back through the
results stream to the vehicle service (`acknowledged`, `command_result` events); a tracker
offline gets what waits for it when it connects, except what expired meanwhile."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from fleet_common.redis import EVENTS_STREAM
from fleet_common.tracker_commands import COMMANDS_CHANNEL, RESULTS_STREAM, queue_key
from fleet_location.trackers import gt06, teltonika

from .test_listeners import port, teltonika_session

TIMEOUT_S = 10.0


@pytest.fixture
async def api(vehicle_service):
    async with httpx.AsyncClient(base_url=vehicle_service.url, timeout=30.0) as client:
        yield client


async def post_command(api, tracker, body: dict) -> httpx.Response:
    return await api.post(
        f"/api/v1/devices/{tracker.device_id}/commands",
        json=body,
        headers=tracker.org.headers("dispatcher"),
    )


async def until_status(api, tracker, command_id: str, status: str) -> dict:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            listed = await api.get(
                f"/api/v1/devices/{tracker.device_id}/commands", headers=tracker.org.headers()
            )
            assert listed.status_code == 200, listed.text
            command = next(c for c in listed.json()["items"] if c["id"] == command_id)
            if command["status"] == status:
                return command
            await asyncio.sleep(0.05)


async def command_events(redis, command_id: str, count: int) -> list[dict]:
    """The command's `command_result` events, once there are `count` (raised just after the
    status the API shows is committed)."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            found = [
                event
                for _id, fields in await redis.xrevrange(EVENTS_STREAM, count=2000)
                if (event := json.loads(fields[b"event"]))["type"] == "command_result"
                and event["details"]["command_id"] == command_id
            ]
            if len(found) >= count:
                return found[::-1]
            await asyncio.sleep(0.05)


async def read_teltonika_command(client) -> str:
    """A Codec 12 command packet's text (and the packet is one)."""
    head = await client.read(8)
    assert head[:4] == b"\x00\x00\x00\x00"
    data = (await client.read(int.from_bytes(head[4:], "big") + 4))[:-4]
    assert data[0] == teltonika.CODEC_12
    assert data[2] == 0x05  # a command, not a response
    return data[7:-1].decode("ascii")


async def read_gt06_command(client) -> tuple[bytes, str]:
    """A 0x80 server command's flag and text."""
    header = await client.read(3)
    packet = gt06.parse_packet(header + await client.read(header[2] + 2))
    assert packet.protocol == gt06.SERVER_COMMAND
    return packet.content[1:5], packet.content[5:].decode("ascii")


def standing_record() -> teltonika.AvlRecord:
    return teltonika.AvlRecord(
        recorded_at=datetime.now(UTC).replace(microsecond=0),
        priority=0,
        lon=106.7,
        lat=10.77,
        altitude_m=5,
        angle_deg=0,
        satellites=8,
        speed_kph=0,
        event_io=0,
        io={teltonika.IO_IGNITION: 1},
    )


async def test_teltonika_engine_stop_reaches_the_tracker_and_is_acknowledged(
    tracker_app, org_a, make_tracker, connect, api, redis
):
    tracker = make_tracker(org_a, "teltonika")
    client = await teltonika_session(connect, tracker_app, tracker.uid)
    # It reports standing still: engine_stop is accepted without `force`.
    await client.send(teltonika.encode_avl([standing_record()]))
    assert await client.read(4) == (1).to_bytes(4, "big")

    response = await post_command(api, tracker, {"type": "engine_stop"})
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["status"] in ("sent", "delivered")  # the tracker may have it already

    assert await read_teltonika_command(client) == "setdigout 1"
    delivered = await until_status(api, tracker, command["id"], "delivered")
    assert delivered["delivered_at"] is not None
    assert delivered["send_count"] == 1
    await client.send(teltonika.encode_command_response("DOUT1:1 DOUT2:0"))
    done = await until_status(api, tracker, command["id"], "acknowledged")
    assert done["message"] == "DOUT1:1 DOUT2:0"
    assert done["completed_at"] is not None

    events = await command_events(redis, command["id"], 2)
    assert [e["details"]["status"] for e in events] == ["delivered", "acknowledged"]
    assert events[-1]["vehicle_id"] == tracker.vehicle_id
    assert events[-1]["device_id"] == tracker.device_id
    assert events[-1]["org_id"] == tracker.org_id
    assert events[-1]["details"]["command_type"] == "engine_stop"
    assert events[-1]["details"]["message"] == "DOUT1:1 DOUT2:0"


async def test_gt06_command_is_acknowledged_and_what_it_cannot_express_is_refused_at_once(
    tracker_app, org_a, make_tracker, connect, api, redis
):
    tracker = make_tracker(org_a, "gt06")
    client = await connect(port(tracker_app, "gt06"))
    await client.send(gt06.encode_login(tracker.uid, 1))
    await client.read(10)

    for body, why in (
        ({"type": "set_interval", "params": {"interval_s": 30}}, "take no 'set_interval'"),
        ({"type": "custom", "params": {"payload": "RELAY,1#\u00e9"}}, "printable ASCII"),
        ({"type": "custom", "params": {"payload": "x" * 252}}, "at most 251 characters"),
    ):
        refused = await post_command(api, tracker, body)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert why in refused.json()["detail"]

    command = (await post_command(api, tracker, {"type": "engine_resume"})).json()
    flag, text = await read_gt06_command(client)
    assert text == "RELAY,0#"
    await client.send(gt06.encode(gt06.COMMAND_RESPONSE, bytes((4 + 3,)) + flag + b"OK!", 2))
    done = await until_status(api, tracker, command["id"], "acknowledged")
    assert done["message"] == "OK!"
    events = await command_events(redis, command["id"], 2)
    assert [e["details"]["status"] for e in events] == ["delivered", "acknowledged"]
    # Only the command that was accepted reached the tracker.
    assert await client.nothing_within(0.3)


async def test_an_offline_tracker_gets_its_commands_at_connection_but_not_expired_ones(
    tracker_app, org_a, make_tracker, connect, api, redis
):
    tracker = make_tracker(org_a, "teltonika")
    late = (await post_command(api, tracker, {"type": "reboot", "expires_in_s": 1})).json()
    waiting = (
        await post_command(
            api, tracker, {"type": "custom", "params": {"payload": "getver"}, "expires_in_s": 60}
        )
    ).json()
    assert late["status"] == waiting["status"] == "sent"
    await until_status(api, tracker, late["id"], "expired")
    [event] = await command_events(redis, late["id"], 1)
    assert event["details"]["status"] == "expired"

    # Both are still in the tracker's queue (it lives as long as the later expiry); only the
    # one still valid is written.
    assert await redis.llen(queue_key(tracker.uid)) == 2
    client = await teltonika_session(connect, tracker_app, tracker.uid)
    assert await read_teltonika_command(client) == "getver"
    await until_status(api, tracker, waiting["id"], "delivered")
    await client.send(teltonika.encode_command_response("Ver:03.27.07_00"))
    await until_status(api, tracker, waiting["id"], "acknowledged")
    assert await client.nothing_within(0.3)
    assert (await until_status(api, tracker, late["id"], "expired"))["delivered_at"] is None


async def test_a_delivered_command_left_unanswered_expires(
    tracker_app, org_a, make_tracker, connect, api
):
    tracker = make_tracker(org_a, "teltonika")
    client = await teltonika_session(connect, tracker_app, tracker.uid)
    command = (await post_command(api, tracker, {"type": "reboot", "expires_in_s": 1})).json()
    assert await read_teltonika_command(client) == "cpureset"  # which a device never answers
    await until_status(api, tracker, command["id"], "delivered")
    expired = await until_status(api, tracker, command["id"], "expired")
    # Its answer after the expiry is too late.
    await client.send(teltonika.encode_command_response("restarting"))
    await asyncio.sleep(0.3)
    assert (await until_status(api, tracker, command["id"], "expired")) == expired


async def test_the_location_side_fails_what_it_cannot_read(
    tracker_app, org_a, make_tracker, connect, redis, wait_for
):
    """Commands that did not come through the vehicle service's checks (another version's,
    a corrupt entry) are reported `failed` on the results stream, never written."""
    tracker = make_tracker(org_a, "gt06")
    client = await connect(port(tracker_app, "gt06"))
    await client.send(gt06.encode_login(tracker.uid, 1))
    await client.read(10)
    bad_id = str(uuid.uuid4())
    await redis.rpush(
        queue_key(tracker.uid),
        orjson.dumps({"id": bad_id, "type": "reboot_the_moon", "params": {}}),
        b"not json",
    )
    await redis.publish(COMMANDS_CHANNEL, tracker.uid)

    async def failures() -> list[dict]:
        found = []
        for _id, fields in await redis.xrevrange(RESULTS_STREAM, count=500):
            decoded = {k.decode(): v.decode() for k, v in fields.items()}
            if decoded["uid"] == tracker.uid and decoded["status"] == "failed":
                found.append(decoded)
        return found if len(found) == 2 else []

    failed = await wait_for(failures)
    assert {f["id"] for f in failed} == {bad_id, ""}
    assert all(f["device_id"] == tracker.device_id for f in failed)
    assert await client.nothing_within(0.3)


async def test_trackers_connecting_together_each_get_their_waiting_commands_in_order(
    tracker_app, org_a, make_tracker, connect, redis
):
    """A fleet reconnecting (after a restart of the listener) at once: the queues are read in
    pipelined batches, and each tracker gets all of its commands, oldest first."""
    trackers = [make_tracker(org_a, "teltonika") for _ in range(6)]
    for tracker in trackers:
        await redis.rpush(
            queue_key(tracker.uid),
            *(
                orjson.dumps(
                    {"id": str(uuid.uuid4()), "type": "custom", "params": {"payload": text}}
                )
                for text in (f"getver {tracker.uid}", f"getinfo {tracker.uid}")
            ),
        )
    clients = await asyncio.gather(
        *(teltonika_session(connect, tracker_app, tracker.uid) for tracker in trackers)
    )
    for tracker, client in zip(trackers, clients, strict=True):
        assert await read_teltonika_command(client) == f"getver {tracker.uid}"
        assert await read_teltonika_command(client) == f"getinfo {tracker.uid}"
    assert not any([await redis.llen(queue_key(tracker.uid)) for tracker in trackers])
