"""A Teltonika packet is acknowledged only after its records are committed: with the commit
held back (a table lock), no acknowledgement comes; the process is killed -9 there; the
device sends the packet again to a new process, and it is stored once. A commit held back
past the commit timeout closes the connection unanswered."""

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from fleet_devstack.servers import free_port
from fleet_location.trackers import teltonika

from .conftest import DeviceClient

COUNT = 20


async def test_kill_9_between_receive_and_ack_then_the_resend_is_stored_once(
    tracker_database, tracker_db, location_env_for, run_service, org_a, make_tracker
):
    tracker = make_tracker(org_a, "teltonika")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    packet = teltonika.encode_avl(
        [
            teltonika.AvlRecord(
                recorded_at=start + timedelta(seconds=i),
                priority=0,
                lon=106.7,
                lat=10.7 + i / 1e4,
                altitude_m=3,
                angle_deg=0,
                satellites=7,
                speed_kph=20,
                event_io=0,
            )
            for i in range(COUNT)
        ]
    )

    async def stored() -> int:
        return await tracker_db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1::uuid", tracker.device_id
        )

    async def session(tracker_port: int) -> DeviceClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", tracker_port)
        client = DeviceClient(reader, writer)
        await client.send(teltonika.encode_imei(tracker.uid))
        assert await client.read(1) == teltonika.ACCEPT
        return client

    def start_process() -> tuple:
        tracker_port = free_port()
        env = location_env_for(
            tracker_database,
            LOCATION_TELTONIKA_PORT=str(tracker_port),
            LOCATION_GT06_PORT=str(free_port()),
        )
        return run_service("location", env), tracker_port

    first, first_port = start_process()
    client = await session(first_port)
    async with tracker_db.acquire() as lock_holder:
        transaction = lock_holder.transaction()
        await transaction.start()
        await lock_holder.execute("LOCK TABLE telemetry IN EXCLUSIVE MODE")
        try:
            await client.send(packet)
            assert await client.nothing_within(2.0), "acknowledged before the commit"
            first.process.kill()  # SIGKILL, with the records received and not committed
            first.process.wait(10)
        finally:
            await transaction.rollback()
    client.close()
    assert await stored() == 0

    second, second_port = start_process()
    client = await session(second_port)
    await client.send(packet)
    assert await client.read(4) == COUNT.to_bytes(4, "big")
    assert await stored() == COUNT
    # Committed, the acknowledgement lost (the device never saw it): sent again, stored once.
    client.close()
    client = await session(second_port)
    await client.send(packet)
    assert await client.read(4) == COUNT.to_bytes(4, "big")
    assert await stored() == COUNT
    client.close()
    second.process.terminate()


def closed_for(reason: str) -> float:
    return REGISTRY.get_sample_value("tracker_connections_closed_total", {"reason": reason}) or 0.0


async def test_a_packet_not_committed_in_time_is_not_answered_and_its_connection_closed(
    tracker_database, tracker_db, location_env_for, start_location, org_a, make_tracker
):
    """The commit timeout (the listener's sweep, no timer per packet): the packet goes
    unanswered and the connection is closed; the device's resend, once the database takes
    writes again, is stored once."""
    tracker = make_tracker(org_a, "teltonika")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    packet = teltonika.encode_avl(
        [
            teltonika.AvlRecord(
                recorded_at=start + timedelta(seconds=i),
                priority=0,
                lon=106.7,
                lat=10.7,
                altitude_m=3,
                angle_deg=0,
                satellites=7,
                speed_kph=20,
                event_io=0,
            )
            for i in range(3)
        ]
    )
    env = location_env_for(
        tracker_database,
        LOCATION_TELTONIKA_PORT=str(free_port()),
        LOCATION_GT06_PORT=str(free_port()),
        LOCATION_TRACKER_COMMIT_TIMEOUT_S="1",
    )
    async with start_location(env) as (app, _client):
        port = app.state.trackers.port("teltonika")

        async def session() -> DeviceClient:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = DeviceClient(reader, writer)
            await client.send(teltonika.encode_imei(tracker.uid))
            assert await client.read(1) == teltonika.ACCEPT
            return client

        client = await session()
        timeouts = closed_for("commit_timeout")
        async with tracker_db.acquire() as lock_holder:
            transaction = lock_holder.transaction()
            await transaction.start()
            await lock_holder.execute("LOCK TABLE telemetry IN EXCLUSIVE MODE")
            try:
                await client.send(packet)
                # Closed with nothing said (an acknowledgement would be read here).
                assert await asyncio.wait_for(client.reader.read(), 15) == b""
                assert closed_for("commit_timeout") == timeouts + 1
            finally:
                await transaction.rollback()
        client.close()

        client = await session()
        await client.send(packet)
        assert await client.read(4) == (3).to_bytes(4, "big")
        client.close()
    assert (
        await tracker_db.fetchval(
            "SELECT count(*) FROM telemetry WHERE device_id = $1::uuid", tracker.device_id
        )
        == 3
    )
