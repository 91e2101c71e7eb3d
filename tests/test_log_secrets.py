"""No token, password, refresh token, device password or device key reaches a log line.

The five services run as real processes writing their logs to files (the `platform`
fixture); this test issues every kind of secret through the public API, uses each the way
clients do (the WebSocket's `?token=` included, which uvicorn logs with its URL), then reads
everything the services logged so far in the session and looks for each of them, and for
anything shaped like a JWT.
"""

import asyncio
import json
import re
import uuid

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")


async def open_and_close(url: str, **kwargs) -> None:
    async with connect(url, **kwargs) as ws:
        try:
            async with asyncio.timeout(3):
                await ws.recv()
        except (TimeoutError, ConnectionClosed):
            pass


async def test_no_secret_reaches_a_log_line(platform):
    secrets: dict[str, str] = {}
    tag = uuid.uuid4().hex[:8]
    ws = platform.gateway.replace("http://", "ws://") + "/api/v1/ws"
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=30) as http:
        secrets["password"] = f"Log-Secret-{uuid.uuid4().hex}"
        registered = await http.post(
            "/api/v1/auth/register",
            json={
                "org_name": f"Logs {tag}",
                "email": f"logs-{tag}@example.com",
                "password": secrets["password"],
                "full_name": "Logs",
            },
        )
        assert registered.status_code == 201, registered.text
        secrets["access token"] = registered.json()["access_token"]
        secrets["refresh token"] = registered.json()["refresh_token"]
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": secrets["refresh token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        token = refreshed.json()["access_token"]
        secrets["refreshed access token"] = token
        secrets["rotated refresh token"] = refreshed.json()["refresh_token"]
        wrong_password = f"Wrong-{uuid.uuid4().hex}"
        secrets["a mistyped password"] = wrong_password
        failed = await http.post(
            "/api/v1/auth/login",
            json={"email": f"logs-{tag}@example.com", "password": wrong_password},
        )
        assert failed.status_code == 401
        headers = {"Authorization": f"Bearer {token}"}

        await open_and_close(f"{ws}?token={token}")
        await open_and_close(ws, subprotocols=["bearer", token])
        await open_and_close(f"{ws}?token={token}x")  # refused, with its token in the URL

        secrets["user password"] = f"User-Secret-{uuid.uuid4().hex}"
        user = await http.post(
            "/api/v1/users",
            headers=headers,
            json={
                "email": f"user-{tag}@example.com",
                "password": secrets["user password"],
                "full_name": "User",
                "role": "viewer",
            },
        )
        assert user.status_code == 201, user.text
        secrets["changed password"] = f"Changed-Secret-{uuid.uuid4().hex}"
        changed = await http.patch(
            f"/api/v1/users/{user.json()['id']}",
            headers=headers,
            json={"password": secrets["changed password"]},
        )
        assert changed.status_code == 200, changed.text

        device = await http.post(
            "/api/v1/devices",
            headers=headers,
            json={"uid": f"logs-{tag}", "name": "Phone", "protocol": "osmand"},
        )
        assert device.status_code == 201, device.text
        credentials = device.json()["credentials"]
        secrets["device password"] = credentials["password"]
        secrets["device key"] = credentials["http_key"]
        fix = {"id": f"logs-{tag}", "lat": "10.77", "lon": "106.70"}
        stored = await http.get("/ingest/osmand", params={**fix, "key": credentials["http_key"]})
        assert stored.status_code == 200, stored.text
        posted = await http.post("/ingest/osmand", data={**fix, "key": credentials["http_key"]})
        assert posted.status_code == 200, posted.text
        rotated = await http.post(
            f"/api/v1/devices/{device.json()['id']}/credentials", headers=headers
        )
        assert rotated.status_code == 200, rotated.text
        secrets["rotated device password"] = rotated.json()["password"]
        secrets["rotated device key"] = rotated.json()["http_key"]
        # The old key, now wrong: refused, and dead-lettered with the key redacted.
        for _ in range(50):
            refused = await http.get(
                "/ingest/osmand", params={**fix, "key": credentials["http_key"]}
            )
            if refused.status_code == 403:
                break
        assert refused.status_code == 403, refused.text

        out = await http.post(
            "/api/v1/auth/logout",
            headers=headers,
            json={"refresh_token": secrets["rotated refresh token"]},
        )
        assert out.status_code == 204, out.text
        await open_and_close(f"{ws}?token={token}")  # a revoked token, in the URL
        rejections = await http.get(
            "/api/v1/ingest/rejections",
            headers={"Authorization": f"Bearer {secrets['access token']}"},
        )
        assert rejections.status_code == 200, rejections.text
        assert credentials["http_key"] not in rejections.text

    await asyncio.sleep(0.5)  # the processes write each line as it is logged; let them land
    logs = {name: service.log_path.read_text() for name, service in platform.services.items()}
    # The run did log what it did (a test of an empty file would prove nothing).
    assert "/ingest/osmand" in logs["gateway"]
    assert "WebSocket /api/v1/ws" in logs["gateway"]
    assert "[redacted]" in logs["gateway"]
    for name, text in logs.items():
        leaked = [what for what, secret in secrets.items() if secret in text]
        assert not leaked, f"the {name} service logged: {leaked}"
        jwts = JWT.findall(text)
        assert not jwts, f"the {name} service logged JWTs: {jwts[:3]}"
        for line in text.splitlines():
            if line.startswith("{"):
                json.loads(line)  # every line stays JSON after redaction
