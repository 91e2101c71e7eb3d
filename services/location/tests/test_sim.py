"""`fleet-sim` creates its vehicles and devices through the gateway, then drives them over
MQTT with each device's own credentials: the positions arrive, mapped to its org."""

import asyncio
import uuid
from datetime import datetime
from itertools import pairwise

import httpx
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


async def test_simulated_vehicles_obey_commands(app, gateway, make_org, db, wait_for):
    """A command through the API reaches the simulated device over MQTT; it obeys and answers:
    a new report interval, the engine stopped, an unsupported command failed."""
    org = make_org()
    args = ["--api", gateway.url, "--vehicles", "1", "--rate", "5", "--duration", "15"]
    args += ["--email", org.emails["admin"], "--password", org.password, "--seed", "3"]
    driving = asyncio.create_task(asyncio.to_thread(main, args))
    headers = org.headers("dispatcher")
    async with httpx.AsyncClient(base_url=f"{gateway.url}/api/v1", headers=headers) as api:

        async def the_device():
            items = (await api.get("/devices")).json()["items"]
            return items[0] if items else None

        device = await wait_for(the_device)
        url = f"/devices/{device['id']}/commands"

        async def answered(command_id: str, status: str):
            listed = (await api.get(url)).json()["items"]
            found = next(c for c in listed if c["id"] == command_id)
            return found if found["status"] == status else None

        async def command(body: dict, status: str) -> dict:
            response = await api.post(url, json=body)
            assert response.status_code == 202, response.text
            return await wait_for(lambda: answered(response.json()["id"], status))

        interval = await command(
            {"type": "set_interval", "params": {"interval_s": 1}}, "acknowledged"
        )
        assert interval["message"] == "reporting every 1 s"
        stop = await command({"type": "engine_stop", "force": True}, "acknowledged")
        unsupported = await command({"type": "custom", "params": {"payload": "x"}}, "failed")
        assert "not supported" in unsupported["message"]
    await driving

    device_id = uuid.UUID(device["id"])
    rows = await db.fetch(
        "SELECT recorded_at, speed_kph, ignition FROM telemetry WHERE device_id = $1 "
        "AND recorded_at > $2 ORDER BY recorded_at",
        device_id,
        datetime.fromisoformat(interval["completed_at"]),
    )
    gaps = [(b["recorded_at"] - a["recorded_at"]).total_seconds() for a, b in pairwise(rows)]
    assert gaps
    # Every second now, not five times a second.
    assert min(gaps) >= 0.9
    stopped = [r for r in rows if r["recorded_at"] > datetime.fromisoformat(stop["completed_at"])]
    assert stopped
    assert all(r["speed_kph"] == 0 and r["ignition"] is False for r in stopped)
