"""`fleet-sim --protocol teltonika|gt06` registers its trackers through the gateway and
drives them over TCP to the location service: the positions arrive, mapped to its org, and
the commands sent to them through the API are obeyed and answered."""

import asyncio
import uuid
from datetime import datetime

import httpx
import pytest

from fleet_location.sim.cli import main


@pytest.fixture(scope="module")
def gateway(stack, auth_service, vehicle_service, run_service):
    env = {
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": auth_service.jwks_url,
        "INTERNAL_SERVICE_TOKEN": stack.secrets["internal_token"],
        "GATEWAY_AUTH_URL": auth_service.url,
        "GATEWAY_VEHICLE_URL": vehicle_service.url,
    }
    return run_service("gateway", env)


@pytest.mark.parametrize("protocol", ["teltonika", "gt06"])
async def test_simulator_drives_hardware_trackers_over_tcp(
    tracker_app, tracker_db, gateway, make_org, wait_for, protocol
):
    org = make_org()
    args = [
        "--api", gateway.url, "--vehicles", "2", "--rate", "5", "--duration", "2",
        "--email", org.emails["admin"], "--password", org.password, "--seed", "3",
        "--protocol", protocol, "--tracker-host", "127.0.0.1",
        "--tracker-port", str(tracker_app.state.trackers.port(protocol)),
    ]  # fmt: skip
    await asyncio.to_thread(main, args)

    async def arrived() -> bool:
        devices, positions = await tracker_db.fetchrow(
            "SELECT count(DISTINCT device_id), count(*) FROM telemetry WHERE org_id = $1",
            uuid.UUID(org.org_id),
        )
        # GT06 times have whole seconds: 5 fixes a second are one position (device, ts).
        return devices == 2 and positions >= 4

    await wait_for(arrived)


# What the simulated hardware answers: the real devices' reply texts.
ENGINE_STOPPED = {"teltonika": "DOUT1:1 DOUT2:0", "gt06": "Cut off the fuel supply: Success!"}
POSITION_REPLY = {"teltonika": "GPS:1 Sat:9 Lat:", "gt06": "Lat:N"}


@pytest.mark.parametrize("protocol", ["teltonika", "gt06"])
async def test_simulated_trackers_answer_commands_sent_through_the_api(
    tracker_app, tracker_db, gateway, vehicle_service, make_org, wait_for, protocol
):
    """The simulator's GT06 answers a 0x80 command with a 0x15 (its server flag back), its
    Teltonika a Codec 12 command with a Codec 12 response; the engine stop is obeyed (the
    vehicle reports standing still after it) and each command ends `acknowledged`."""
    org = make_org()
    args = [
        "--api", gateway.url, "--vehicles", "1", "--rate", "4", "--duration", "12",
        "--email", org.emails["admin"], "--password", org.password, "--seed", "5",
        "--protocol", protocol, "--tracker-host", "127.0.0.1",
        "--tracker-port", str(tracker_app.state.trackers.port(protocol)),
    ]  # fmt: skip
    simulator = asyncio.create_task(asyncio.to_thread(main, args))
    async with httpx.AsyncClient(base_url=vehicle_service.url, timeout=30.0) as api:

        async def sim_device() -> dict | None:
            listed = await api.get("/api/v1/devices", headers=org.headers())
            items = listed.json()["items"] if listed.status_code == 200 else []
            return items[0] if items else None

        device = await wait_for(sim_device)

        async def reporting() -> bool:
            return bool(
                await tracker_db.fetchval(
                    "SELECT count(*) FROM telemetry WHERE device_id = $1",
                    uuid.UUID(device["id"]),
                )
            )

        await wait_for(reporting)  # connected: a command is written at once

        async def command(body: dict) -> dict:
            created = await api.post(
                f"/api/v1/devices/{device['id']}/commands",
                json=body,
                headers=org.headers("dispatcher"),
            )
            assert created.status_code == 202, created.text

            async def done() -> dict | None:
                listed = await api.get(
                    f"/api/v1/devices/{device['id']}/commands", headers=org.headers()
                )
                found = next(c for c in listed.json()["items"] if c["id"] == created.json()["id"])
                return found if found["status"] in ("acknowledged", "failed") else None

            return await wait_for(done)

        stopped = await command({"type": "engine_stop", "force": True})
        assert (stopped["status"], stopped["message"]) == ("acknowledged", ENGINE_STOPPED[protocol])

        async def standing_after_the_stop() -> bool:
            return bool(
                await tracker_db.fetchval(
                    "SELECT count(*) FROM telemetry WHERE device_id = $1 AND recorded_at > $2 "
                    "AND speed_kph = 0",
                    uuid.UUID(device["id"]),
                    datetime.fromisoformat(stopped["completed_at"]),
                )
            )

        await wait_for(standing_after_the_stop)

        position = await command({"type": "request_position"})
        assert position["status"] == "acknowledged"
        assert position["message"].startswith(POSITION_REPLY[protocol])
    await simulator
