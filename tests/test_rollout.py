"""A backend replaced as a rolling update replaces it, under steady load through the gateway:
no request fails (issue 13). The vehicle service stands for the backends: they share the
same server and shutdown (uvicorn here, gunicorn's uvicorn workers in the images).

Kubernetes' part is played by a TCP proxy in front of the replicas, as kube-proxy is in
front of a Service's pods: a new connection goes to a current endpoint, an open one stays
with its pod. The rollout: the new replica up and ready, the endpoint switched to it, the
preStop pause, then SIGTERM to the old one, which finishes what it is serving and closes its
idle connections; the gateway's pooled connections to it must then be replaced, not failed.
"""

import asyncio
import signal
import uuid
from collections import Counter

import httpx

from fleet_devstack.servers import free_port

CLIENTS = 4
PAUSE_S = 0.02  # per client between requests: about 150 requests/s in all
PRESTOP_S = 1.0  # shorter than the manifests' 5 s: the endpoint switch here is immediate


class ServiceProxy:
    """Forwards each new TCP connection to `port`, which the test changes like an endpoint."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listen_port = free_port()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.listen_port)

    async def stop(self) -> None:
        self._server.close()

    async def _forward(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_a_replaced_backend_fails_no_request(platform, run_service):
    old = run_service("vehicle", platform.env)
    proxy = ServiceProxy(port_of(old.url))
    await proxy.start()
    gateway = run_service(
        "gateway", {**platform.env, "GATEWAY_VEHICLE_URL": f"http://127.0.0.1:{proxy.listen_port}"}
    )
    async with httpx.AsyncClient(base_url=f"{gateway.url}/api/v1", timeout=30) as api:
        registered = await api.post(
            "/auth/register",
            json={
                "org_name": "Rollout",
                "email": f"rollout-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct horse battery staple",
                "full_name": "Rollout",
            },
        )
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        outcomes: Counter = Counter()
        failures: list[str] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                try:
                    response = await api.get("/vehicles", headers=headers)
                    outcomes[response.status_code] += 1
                    if response.status_code != 200:
                        failures.append(response.text[:200])
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                await asyncio.sleep(PAUSE_S)

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(1.0)  # connections to the old replica pooled in the gateway
            new = await asyncio.to_thread(run_service, "vehicle", platform.env)
            proxy.port = port_of(new.url)
            await asyncio.sleep(PRESTOP_S)
            old.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(old.process.wait, 30)
            await asyncio.sleep(1.0)  # and on, through the new replica alone
        finally:
            stop.set()
            await asyncio.gather(*clients)
            await proxy.stop()
    assert set(outcomes) == {200}, (dict(outcomes), failures[:3])
    assert outcomes[200] > 100
    # It shut down, not died: uvicorn re-raises SIGTERM once done, so the exit code is -15
    # either way and its log tells.
    assert "Application shutdown complete." in old.log_path.read_text()
