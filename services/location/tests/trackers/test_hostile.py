"""Hostile input on the tracker listeners: each is refused, counted, and the listener keeps
serving (the app of conftest.py: 1 s handshake and frame timeouts, 16 KiB frames, 8
connections per source address, 12 in all)."""

import asyncio
import os
from datetime import UTC, datetime

from fleet_location.trackers import gt06, teltonika
from fleet_location.trackers.errors import TrackerReason

from .conftest import rejected
from .frames import GT06_LOGIN


def port(app, protocol: str) -> int:
    return app.state.trackers.port(protocol)


async def still_serving(app, connect, uid: str) -> None:
    client = await connect(port(app, "teltonika"))
    await client.send(teltonika.encode_imei(uid))
    assert await client.read(1) == teltonika.ACCEPT
    client.close()


async def test_oversized_lengths_close_the_connection(tracker_app, org_a, make_tracker, connect):
    tracker = make_tracker(org_a, "teltonika")
    too_large = rejected(TrackerReason.FRAME_TOO_LARGE)
    client = await connect(port(tracker_app, "teltonika"))
    await client.send(teltonika.encode_imei(tracker.uid))
    assert await client.read(1) == teltonika.ACCEPT
    await client.send(b"\x00\x00\x00\x00\x7f\xff\xff\xff\x08")
    assert await client.closed_by_server()
    gt06_client = await connect(port(tracker_app, "gt06"))
    await gt06_client.send(b"\x79\x79\xff\xf0\x01")
    assert await gt06_client.closed_by_server()
    assert rejected(TrackerReason.FRAME_TOO_LARGE) == too_large + 2
    await still_serving(tracker_app, connect, tracker.uid)


async def test_garbage_before_a_frame_is_skipped_and_too_much_closes(
    tracker_app, org_a, make_tracker, connect
):
    tracker = make_tracker(org_a, "gt06")
    garbage = rejected(TrackerReason.GARBAGE)
    client = await connect(port(tracker_app, "gt06"))
    await client.send(b"AT+GPRS\r\n\x00\xff" + gt06.encode_login(tracker.uid, 5))
    assert await client.read(10) == gt06.encode_response(gt06.LOGIN, 5)
    assert rejected(TrackerReason.GARBAGE) > garbage

    flooded = await connect(port(tracker_app, "gt06"))
    await flooded.send(bytes(range(0x10, 0x70)) * 60)  # 5.7 KB, no start bytes in it
    assert await flooded.closed_by_server()
    teltonika_tracker = make_tracker(org_a, "teltonika")
    await still_serving(tracker_app, connect, teltonika_tracker.uid)


async def test_half_frames_and_slow_loris_time_out(tracker_app, org_a, make_tracker, connect):
    tracker = make_tracker(org_a, "teltonika")
    handshake_timeouts = rejected(TrackerReason.HANDSHAKE_TIMEOUT)
    read_timeouts = rejected(TrackerReason.READ_TIMEOUT)
    silent = await connect(port(tracker_app, "teltonika"))
    half_login = await connect(port(tracker_app, "gt06"))
    await half_login.send(bytes.fromhex(GT06_LOGIN)[:7])
    loris = await connect(port(tracker_app, "teltonika"))
    await loris.send(teltonika.encode_imei(tracker.uid))
    assert await loris.read(1) == teltonika.ACCEPT
    packet = teltonika.encode_avl(
        [
            teltonika.AvlRecord(
                recorded_at=datetime.now(UTC),
                priority=0,
                lon=1.0,
                lat=1.0,
                altitude_m=0,
                angle_deg=0,
                satellites=5,
                speed_kph=0,
                event_io=0,
            )
        ]
    )

    async def trickle() -> None:
        # A byte every 0.3 s: reads keep coming, the frame never completes in time.
        for byte in packet[:-1]:
            await loris.send(bytes((byte,)))
            await asyncio.sleep(0.3)

    trickling = asyncio.create_task(trickle())
    try:
        assert await silent.closed_by_server()
        assert await half_login.closed_by_server()
        assert await loris.closed_by_server()
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
    assert rejected(TrackerReason.HANDSHAKE_TIMEOUT) == handshake_timeouts + 2
    assert rejected(TrackerReason.READ_TIMEOUT) == read_timeouts + 1
    await still_serving(tracker_app, connect, tracker.uid)


async def test_a_connection_buffers_a_bounded_number_of_bytes(
    tracker_app, org_a, make_tracker, connect
):
    tracker = make_tracker(org_a, "teltonika")
    overflow = rejected(TrackerReason.BUFFER_OVERFLOW)
    client = await connect(port(tracker_app, "teltonika"))
    # 40 KB at once, more than twice the largest frame (16 KiB here): refused on arrival.
    await client.send(teltonika.encode_imei(tracker.uid) + os.urandom(40_000))
    assert await client.closed_by_server()
    assert rejected(TrackerReason.BUFFER_OVERFLOW) == overflow + 1
    await still_serving(tracker_app, connect, tracker.uid)


async def test_connection_floods_are_bounded_per_source_and_in_all(
    tracker_app, org_a, make_tracker, connect, wait_for
):
    trackers = [make_tracker(org_a, "teltonika") for _ in range(12)]
    server = tracker_app.state.trackers

    def count_is(expected: int):
        async def check() -> bool:
            return server.connection_count() == expected

        return check

    async def logged_in(tracker, local: str):
        # Past the handshake, so the (1 s) handshake timeout does not thin the flood out.
        client = await connect(port(tracker_app, "teltonika"), local=local)
        await client.send(teltonika.encode_imei(tracker.uid))
        assert await client.read(1) == teltonika.ACCEPT
        return client

    await wait_for(count_is(0))
    per_source = rejected(TrackerReason.TOO_MANY_FROM_SOURCE)
    in_all = rejected(TrackerReason.TOO_MANY_CONNECTIONS)
    held = [await logged_in(tracker, "127.0.0.1") for tracker in trackers[:8]]
    refused = await connect(port(tracker_app, "gt06"))
    assert await refused.closed_by_server()
    assert rejected(TrackerReason.TOO_MANY_FROM_SOURCE) == per_source + 1
    # Another source address is let in, up to the limit of all connections.
    held += [await logged_in(tracker, "127.0.0.2") for tracker in trackers[8:]]
    refused = await connect(port(tracker_app, "teltonika"), local="127.0.0.3")
    assert await refused.closed_by_server()
    assert rejected(TrackerReason.TOO_MANY_CONNECTIONS) == in_all + 1
    for client in held:
        client.close()
    await wait_for(count_is(0))
    await still_serving(tracker_app, connect, trackers[0].uid)
