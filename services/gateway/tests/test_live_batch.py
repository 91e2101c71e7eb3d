"""Batched live sockets (`/api/v1/ws?batch=1`) through a real gateway process."""

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from .conftest import gateway_env
from .test_live import next_data_message, ws_url


@pytest.fixture
async def redis_client(stack):
    client = aioredis.Redis.from_url(stack.redis.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def slow_batch_gateway(stack, auth_service, upstreams, run_service):
    """Batches close only on size (3) or an alert: the window is far longer than any test."""
    env = gateway_env(
        stack,
        auth_service,
        upstreams,
        GATEWAY_WS_BATCH_WINDOW_S="5",
        GATEWAY_WS_BATCH_MAX_POSITIONS="3",
        GATEWAY_WS_PING_INTERVAL_S="60",
    )
    return run_service("gateway", env)


def lua_position(n: int) -> str:
    """A position message as the location service's script spells it."""
    data = json.dumps({"vehicle_id": str(uuid.uuid4()), "n": n}, separators=(",", ":"))
    return '{"type":"position","data":' + data + "}"


async def publish(redis_client, org, *messages: str) -> None:
    async with redis_client.pipeline(transaction=False) as pipe:
        for message in messages:
            pipe.publish(f"fleet:live:{org.org_id}", message)
        await pipe.execute()


async def subscribed(redis_client, org) -> None:
    """Wait until the gateway holds the org's subscription (it subscribes after the
    handshake), so that nothing published next is missed."""
    channel = f"fleet:live:{org.org_id}"
    async with asyncio.timeout(5):
        while (await redis_client.pubsub_numsub(channel))[0][1] < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_positions_come_batched_to_batch_sockets_and_one_by_one_to_others(
    gateway, make_org, redis_client
):
    org = make_org()
    async with (
        connect(ws_url(gateway, org.viewer) + "&batch=1") as batched,
        connect(ws_url(gateway, org.viewer)) as plain,
    ):
        await subscribed(redis_client, org)
        # Both spellings: the location service's compact one and a spaced one.
        messages = [lua_position(n) for n in range(4)]
        messages.append(json.dumps({"type": "position", "data": {"n": 4}}))
        await publish(redis_client, org, *messages)

        received: list[dict] = []
        batches = 0
        while len(received) < 5:
            message = await next_data_message(batched)
            assert message["type"] == "positions"
            received.extend(message["data"])
            batches += 1
        assert [p["n"] for p in received] == [0, 1, 2, 3, 4]
        assert batches < 5  # gathered within the 200 ms window, not one message each

        one_by_one = [await next_data_message(plain) for _ in range(5)]
        assert [m["type"] for m in one_by_one] == ["position"] * 5
        assert [m["data"]["n"] for m in one_by_one] == [0, 1, 2, 3, 4]


async def test_a_full_batch_goes_at_once_and_an_alert_sends_what_is_pending_first(
    slow_batch_gateway, make_org, redis_client
):
    org, other = make_org(), make_org()
    async with (
        connect(ws_url(slow_batch_gateway, org.viewer) + "&batch=1") as batched,
        connect(ws_url(slow_batch_gateway, other.viewer) + "&batch=1") as others,
    ):
        await subscribed(redis_client, org)
        await subscribed(redis_client, other)
        await publish(redis_client, org, *(lua_position(n) for n in range(3)))
        full = await next_data_message(batched)
        assert [p["n"] for p in full["data"]] == [0, 1, 2]

        alert = {"type": "alert", "data": {"id": str(uuid.uuid4()), "type": "overspeed"}}
        await publish(redis_client, org, lua_position(3), lua_position(4), json.dumps(alert))
        # Long before the 5 s window ends: the alert is not held back, and the positions
        # published before it come first.
        pending = await next_data_message(batched)
        assert pending["type"] == "positions"
        assert [p["n"] for p in pending["data"]] == [3, 4]
        assert await next_data_message(batched) == alert

        # The other org's batched socket got none of it: its first message is its own alert.
        own = {"type": "alert", "data": {"id": str(uuid.uuid4()), "type": "idle"}}
        await publish(redis_client, other, json.dumps(own))
        assert await next_data_message(others) == own


async def test_only_batch_1_or_true_asks_for_batches(gateway, make_org, redis_client):
    org = make_org()
    async with connect(ws_url(gateway, org.viewer) + "&batch=no") as socket:
        await subscribed(redis_client, org)
        position = lua_position(7)
        await publish(redis_client, org, position)
        assert await next_data_message(socket) == json.loads(position)
