"""The live WebSocket through a real gateway process."""

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def ws_url(gateway, token: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/api/v1/ws?token={token}"


async def next_data_message(ws) -> dict:
    """The next message that is not a ping (pings are answered)."""
    async with asyncio.timeout(5):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") != "ping":
                return message
            await ws.send(json.dumps({"type": "pong"}))


async def close_code(ws, *, answer_pings: bool) -> int:
    """Read until the server closes the socket; its close code."""
    try:
        async with asyncio.timeout(15):
            while True:
                await ws.recv()
                if answer_pings:
                    await ws.send(json.dumps({"type": "pong"}))
    except ConnectionClosed as closed:
        return closed.rcvd.code
    raise AssertionError("the socket stayed open")


async def stay_connected(ws, seconds: float) -> None:
    """Answer pings for `seconds`; fails if the server closes meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                message = json.loads(await ws.recv())
        except TimeoutError:
            return
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))


@pytest.fixture
async def redis_client(stack):
    client = aioredis.Redis.from_url(stack.redis.url)
    yield client
    await client.aclose()


async def test_org_isolation(gateway, make_org, redis_client):
    org_a, org_b = make_org(), make_org()
    async with (
        connect(ws_url(gateway, org_a.viewer)) as ws_a,
        connect(ws_url(gateway, org_a.dispatcher)) as ws_a2,
        connect(ws_url(gateway, org_b.viewer)) as ws_b,
    ):
        channel_a, channel_b = f"fleet:live:{org_a.org_id}", f"fleet:live:{org_b.org_id}"
        # One subscription per org and process, though org A has two sockets. (The sockets
        # subscribe just after the handshake, so wait for them; Redis has no event for it.)
        want = [(channel_a.encode(), 1), (channel_b.encode(), 1)]
        async with asyncio.timeout(5):
            while await redis_client.pubsub_numsub(channel_a, channel_b) != want:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a second subscription for A would show up here
        assert await redis_client.pubsub_numsub(channel_a, channel_b) == want
        position = {"type": "position", "data": {"vehicle_id": str(uuid.uuid4()), "lat": 10.7}}
        await redis_client.publish(channel_a, json.dumps(position))
        assert await next_data_message(ws_a) == position
        assert await next_data_message(ws_a2) == position
        alert = {"type": "alert", "data": {"id": str(uuid.uuid4()), "type": "overspeed"}}
        await redis_client.publish(channel_b, json.dumps(alert))
        # B's first message is B's own alert: A's position never reached it.
        assert await next_data_message(ws_b) == alert


@pytest.mark.parametrize("kind", ["expired", "tampered", "alg_none", "unknown_kid", "garbage"])
async def test_bad_token_closes_with_4401(gateway, make_org, bad_tokens, kind):
    org = make_org()
    async with connect(ws_url(gateway, bad_tokens(org)[kind])) as ws:
        assert await close_code(ws, answer_pings=False) == 4401


async def test_missing_token_closes_with_4401(gateway):
    url = gateway.url.replace("http://", "ws://") + "/api/v1/ws"
    async with connect(url) as ws:
        assert await close_code(ws, answer_pings=False) == 4401


def short_lived(sign_token, org, role="viewer", ttl_s=2):
    import jwt

    claims = jwt.decode(org.token(role), options={"verify_signature": False})
    now = int(time.time())
    return sign_token({**claims, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex})


async def test_socket_closes_when_its_token_expires(gateway, make_org, sign_token):
    org = make_org()
    async with connect(ws_url(gateway, short_lived(sign_token, org))) as ws:
        assert await close_code(ws, answer_pings=True) == 4401


async def test_fresh_token_keeps_the_socket_open(gateway, make_org, sign_token, redis_client):
    org = make_org()
    async with connect(ws_url(gateway, short_lived(sign_token, org))) as ws:
        await ws.send(json.dumps({"type": "token", "token": org.viewer}))
        accepted = await next_data_message(ws)
        assert accepted["type"] == "token_accepted"
        await stay_connected(ws, 4)  # past the first token's expiry
        message = {"type": "position", "data": {"n": 1}}
        await redis_client.publish(f"fleet:live:{org.org_id}", json.dumps(message))
        assert await next_data_message(ws) == message


async def test_another_users_token_is_refused_for_renewal(gateway, make_org):
    org = make_org()
    async with connect(ws_url(gateway, org.viewer)) as ws:
        await ws.send(json.dumps({"type": "token", "token": org.admin}))
        assert await close_code(ws, answer_pings=True) == 4401


async def test_pings_and_silent_peers_are_dropped(gateway, make_org):
    org = make_org()
    async with connect(ws_url(gateway, org.viewer)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 3))
        assert first["type"] == "ping"
        # Never answering: after three ping intervals the gateway gives up on us.
        assert await close_code(ws, answer_pings=False) == 4408
