"""Revocation takes effect at once: sign-out, deactivation, role and password changes stop
the user's access tokens in the gateway and in the services, and close their WebSockets.

And the WebSocket's other ways of carrying its token: the `bearer` subprotocol and a first
message (the query parameter is tested in test_live.py).
"""

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

NEW_PASSWORD = "Another-Test-Passw0rd!"


def ws_base(gateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/api/v1/ws"


async def closed_with(ws) -> int:
    """Answer pings until the server closes the socket; its close code."""
    try:
        async with asyncio.timeout(15):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
    except ConnectionClosed as closed:
        return closed.rcvd.code
    raise AssertionError("the socket stayed open")


async def first_message(ws) -> dict:
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") != "ping":
                return message
            await ws.send(json.dumps({"type": "pong"}))


async def refused_soon(client: httpx.AsyncClient, path: str, token: str) -> httpx.Response:
    """Call `path` until the token is refused (each verifier re-reads revocations at least
    every second); fails if it is still accepted after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def login(auth_url: str, email: str, password: str) -> dict:
    async with httpx.AsyncClient(base_url=auth_url, timeout=30) as http:
        response = await http.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def auth_client(auth_service):
    async with httpx.AsyncClient(base_url=auth_service.url, timeout=30) as http:
        yield http


async def test_the_bearer_subprotocol_carries_the_token_and_is_echoed(gateway, make_org):
    org = make_org()
    async with connect(ws_base(gateway), subprotocols=["bearer", org.viewer]) as ws:
        assert ws.subprotocol == "bearer"
        await ws.send(json.dumps({"type": "token", "token": org.viewer}))
        assert (await first_message(ws))["type"] == "token_accepted"
    async with connect(ws_base(gateway), subprotocols=["bearer", "not.a.token"]) as ws:
        assert await closed_with(ws) == 4401


async def test_a_first_message_carries_the_token(gateway, make_org, stack):
    import redis.asyncio as aioredis

    org = make_org()
    async with connect(ws_base(gateway)) as ws:
        await ws.send(json.dumps({"type": "token", "token": org.viewer}))
        # Subscribed once the token is verified: a position published now reaches it.
        redis = aioredis.Redis.from_url(stack.redis.url)
        try:
            message = {"type": "position", "data": {"n": 1}}
            channel = f"fleet:live:{org.org_id}"
            async with asyncio.timeout(10):
                while await redis.pubsub_numsub(channel) != [(channel.encode(), 1)]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await redis.publish(channel, json.dumps(message))
            assert await first_message(ws) == message
        finally:
            await redis.aclose()
    async with connect(ws_base(gateway)) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert await closed_with(ws) == 4401


async def test_logout_revokes_that_access_token_at_once(gateway, client, auth_client, make_org):
    org = make_org()
    signed_in = await login(auth_client.base_url, org.emails["viewer"], org.password)
    token = signed_in["access_token"]
    async with connect(ws_base(gateway), subprotocols=["bearer", token]) as ws:
        out = await client.post(
            "/api/v1/auth/logout",
            headers={"Authorization": f"Bearer {token}"},
            json={"refresh_token": signed_in["refresh_token"]},
        )
        assert out.status_code == 204, out.text
        assert await closed_with(ws) == 4401
    assert (await refused_soon(client, "/api/v1/vehicles", token)).status_code == 401
    refused = await refused_soon(auth_client, "/api/v1/auth/me", token)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "token has been revoked"
    # The user's other session goes on.
    other = await client.get("/api/v1/vehicles", headers=org.headers("viewer"))
    assert other.status_code == 200, other.text


async def test_deactivation_revokes_every_token_and_closes_the_sockets(
    gateway, client, auth_client, make_org
):
    org = make_org()
    async with (
        connect(ws_base(gateway), subprotocols=["bearer", org.dispatcher]) as ws,
        connect(f"{ws_base(gateway)}?token={org.dispatcher}") as ws_query,
    ):
        patched = await client.patch(
            f"/api/v1/users/{org.user_ids['dispatcher']}",
            headers=org.headers("admin"),
            json={"is_active": False},
        )
        assert patched.status_code == 200, patched.text
        assert await closed_with(ws) == 4401
        assert await closed_with(ws_query) == 4401
    assert (await refused_soon(client, "/api/v1/devices", org.dispatcher)).status_code == 401
    assert (await refused_soon(auth_client, "/api/v1/auth/me", org.dispatcher)).status_code == 401
    # Others in the org are untouched.
    assert (await client.get("/api/v1/devices", headers=org.headers("viewer"))).status_code == 200


async def test_a_role_change_revokes_the_tokens_of_the_old_role(
    gateway, client, auth_client, make_org
):
    org = make_org()
    async with connect(ws_base(gateway), subprotocols=["bearer", org.viewer]) as ws:
        patched = await client.patch(
            f"/api/v1/users/{org.user_ids['viewer']}",
            headers=org.headers("admin"),
            json={"role": "dispatcher"},
        )
        assert patched.status_code == 200, patched.text
        assert await closed_with(ws) == 4401
    assert (await refused_soon(client, "/api/v1/vehicles", org.viewer)).status_code == 401
    # A new sign-in at once gets a token with the new role, and it works.
    fresh = await login(auth_client.base_url, org.emails["viewer"], org.password)
    me = await auth_client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["user"]["role"] == "dispatcher"


async def test_a_password_change_revokes_the_tokens(gateway, client, auth_client, make_org):
    org = make_org()
    async with connect(ws_base(gateway), subprotocols=["bearer", org.viewer]) as ws:
        # Straight to the auth service: hashing the new password can take longer than this
        # gateway's 1 s upstream timeout on a busy machine (what is tested is the revocation).
        patched = await auth_client.patch(
            f"/api/v1/users/{org.user_ids['viewer']}",
            headers=org.headers("admin"),
            json={"password": NEW_PASSWORD},
        )
        assert patched.status_code == 200, patched.text
        assert await closed_with(ws) == 4401
    assert (await refused_soon(client, "/api/v1/vehicles", org.viewer)).status_code == 401
    fresh = await login(auth_client.base_url, org.emails["viewer"], NEW_PASSWORD)
    ok = await client.get(
        "/api/v1/vehicles", headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert ok.status_code == 200, ok.text


async def test_a_rename_revokes_nothing(client, make_org):
    org = make_org()
    patched = await client.patch(
        f"/api/v1/users/{org.user_ids['viewer']}",
        headers=org.headers("admin"),
        json={"full_name": "Renamed"},
    )
    assert patched.status_code == 200, patched.text
    await asyncio.sleep(1.5)  # past the revocation cache's second, so a revocation would show
    assert (await client.get("/api/v1/vehicles", headers=org.headers("viewer"))).status_code == 200
