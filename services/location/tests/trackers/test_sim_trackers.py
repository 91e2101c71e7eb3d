"""`fleet-sim --protocol teltonika|gt06` registers its trackers through the gateway and
drives them over TCP to the location service: the positions arrive, mapped to its org."""

import asyncio
import uuid

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
