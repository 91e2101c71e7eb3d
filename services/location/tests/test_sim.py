"""`fleet-sim` creates its vehicles and devices through the gateway, then drives them over
MQTT with each device's own credentials: the positions arrive, mapped to its org."""

import asyncio
import uuid

import pytest

from fleet_location.sim.cli import main

pytestmark = pytest.mark.slow


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


async def test_simulator_drives_vehicles_through_the_public_api(
    app, gateway, make_org, db, wait_for
):
    org = make_org()
    args = [
        "--api",
        gateway.url,
        "--vehicles",
        "2",
        "--rate",
        "5",
        "--duration",
        "3",
        "--email",
        org.emails["admin"],
        "--password",
        org.password,
        "--seed",
        "7",
    ]
    await asyncio.to_thread(main, args)

    async def arrived():
        devices, positions = await db.fetchrow(
            "SELECT count(DISTINCT device_id), count(*) FROM telemetry WHERE org_id = $1",
            uuid.UUID(org.org_id),
        )
        return devices == 2 and positions >= 20

    await wait_for(arrived)
    moved = await db.fetchval(
        "SELECT count(DISTINCT geog::text) FROM telemetry WHERE org_id = $1", uuid.UUID(org.org_id)
    )
    assert moved > 2
