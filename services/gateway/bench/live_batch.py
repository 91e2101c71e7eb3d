"""What the live WebSocket costs the gateway at 10,000 positions/s: one message per position
against `?batch=1` (positions gathered per 200 ms), measured in the same run.

Starts PostgreSQL and Redis (fleet_devstack, in a temporary folder), the auth service and the
gateway as real uvicorn processes, registers an org, then for each mode in turn: one socket
of that org, and a publisher process sending position messages (spelled as the location
service's script spells them) to the org's live channel at the offered rate. Printed per
mode: the gateway's CPU (from /proc) as a share of one core and per position, the
WebSocket messages the client got, the share of positions delivered, and the ratio of the
two modes' CPU. The gateway's per-socket queue is raised for the run so that the
per-message socket is measured rather than closed as too slow (`GATEWAY_WS_QUEUE_SIZE`).

    uv run python services/gateway/bench/live_batch.py [--rate 10000] [--duration 10] [--quick]
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis
from websockets.asyncio.client import connect

from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live

VEHICLES = 10_000
TICK_S = 0.01


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vehicle_ids(count: int = VEHICLES) -> list[str]:
    """The same ids in every process (the dashboard bench's latest positions use them)."""
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"fleet-bench-vehicle-{n}")) for n in range(count)]


def position_message(vehicle_ids: list[str], org_id: str, n: int) -> str:
    index, step = n % len(vehicle_ids), n // len(vehicle_ids)
    vehicle = vehicle_ids[index]
    data = {
        "device_id": vehicle,
        "vehicle_id": vehicle,
        "org_id": org_id,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        # A 100 x 100 grid, 0.005 degrees apart, every vehicle moving east.
        "lat": 10.5 + (index // 100) * 0.005,
        "lon": 106.4 + (index % 100) * 0.005 + step * 1e-4,
        "speed_kph": 42.5,
        "heading_deg": 270.0,
        "altitude_m": None,
        "accuracy_m": 4.5,
        "battery_pct": 87,
        "ignition": True,
        "odometer_km": None,
        "attrs": {},
    }
    return '{"type":"position","data":' + json.dumps(data, separators=(",", ":")) + "}"


def publish(redis_url: str, channel: str, org_id: str, rate: int, duration_s: float) -> None:
    """The publisher process: `rate` messages a second, sent every 10 ms in pipelines."""
    client = redis.Redis.from_url(redis_url)
    ids = vehicle_ids()
    per_tick = max(1, round(rate * TICK_S))
    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration_s:
        due = int(elapsed * rate) + per_tick
        pipe = client.pipeline(transaction=False)
        while sent < due:
            pipe.publish(channel, position_message(ids, org_id, sent))
            sent += 1
        pipe.execute()
        time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
    print(sent)


async def measure(
    ws_url: str, gateway_pid: int, publisher: list[str], duration_s: float
) -> dict[str, float]:
    messages = positions = 0
    async with connect(ws_url, max_size=None, max_queue=None) as socket:
        await asyncio.sleep(0.5)  # subscribed before the first position
        cpu_before, started = cpu_seconds(gateway_pid), time.monotonic()
        process = await asyncio.create_subprocess_exec(*publisher, stdout=asyncio.subprocess.PIPE)
        reading_until = time.monotonic() + duration_s + 2.0  # the last batch, the backlog
        while (left := reading_until - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(socket.recv(), left)
            except TimeoutError:
                break
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await socket.send('{"type":"pong"}')
                continue
            messages += 1
            positions += len(message["data"]) if kind == "positions" else 1
        cpu = cpu_seconds(gateway_pid) - cpu_before
        wall = time.monotonic() - started
        sent = int((await process.communicate())[0])
    return {
        "cpu_share": cpu / wall,
        "cpu_us_per_position": cpu / max(sent, 1) * 1e6,
        "messages": messages,
        "delivered": positions / max(sent, 1),
        "sent": sent,
    }


def run(args) -> int:
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-live-"))
    os.chmod(base, 0o755)  # noqa: S103 - PostgreSQL runs as another user and must enter
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    processes: list[subprocess.Popen] = []
    try:
        stack.postgres.init()
        stack.postgres.start()
        stack.redis.start()
        stack.postgres.create_database("auth_db")
        auth_port, gateway_port = free_port(), free_port()
        auth_url = f"http://127.0.0.1:{auth_port}"
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": stack.redis.url,
            "AUTH_JWKS_URL": f"{auth_url}/.well-known/jwks.json",
            "AUTH_DATABASE_URL": stack.postgres.url("auth_db"),
            "AUTH_KEYS_DIR": str(base / "keys"),
            "GATEWAY_AUTH_URL": auth_url,
            "GATEWAY_WS_QUEUE_SIZE": "1000000",
        }
        migrate("auth", env)
        for service, port in (("auth", auth_port), ("gateway", gateway_port)):
            log = (base / f"{service}.log").open("w")
            process = subprocess.Popen(  # noqa: S603 - our own service command
                service_command(service, port),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            try:
                wait_until_live(port, process=process)
            except Exception:
                print((base / f"{service}.log").read_text()[-3000:], file=sys.stderr)
                raise
        gateway_pid = processes[-1].pid
        response = httpx.post(
            f"{auth_url}/api/v1/auth/register",
            json={
                "org_name": "Bench",
                "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "Bench-Passw0rd-2026",
                "full_name": "Bench Mark",
            },
            timeout=30,
        )
        response.raise_for_status()
        registered = response.json()
        org_id, token = registered["org"]["id"], registered["access_token"]
        publisher = [
            sys.executable,
            __file__,
            "--publish",
            stack.redis.url,
            f"fleet:live:{org_id}",
            org_id,
            str(args.rate),
            str(args.duration),
        ]
        ws_url = f"ws://127.0.0.1:{gateway_port}/api/v1/ws?token={token}"
        print(
            f"{args.rate} positions/s for {args.duration:g} s to one socket, "
            f"{VEHICLES} vehicles; load average {os.getloadavg()[0]:.1f}"
        )
        results = {}
        for mode, url in (("per-message", ws_url), ("batched", ws_url + "&batch=1")):
            result = asyncio.run(measure(url, gateway_pid, publisher, args.duration))
            results[mode] = result
            print(
                f"{mode:>12}: gateway {result['cpu_share'] * 100:5.1f}% of a core, "
                f"{result['cpu_us_per_position']:6.1f} us CPU per position, "
                f"{result['messages']:>7} messages, "
                f"{result['delivered'] * 100:5.1f}% of {result['sent']} positions delivered"
            )
        ratio = results["per-message"]["cpu_us_per_position"] / max(
            results["batched"]["cpu_us_per_position"], 1e-9
        )
        print(f"batched costs the gateway 1/{ratio:.1f} of per-message CPU per position")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return 0
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()
        remove_tree(base)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        redis_url, channel, org_id, rate, duration = sys.argv[2:7]
        publish(redis_url, channel, org_id, int(rate), float(duration))
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=10_000, help="positions per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per mode")
    parser.add_argument("--quick", action="store_true", help="4 s per mode")
    args = parser.parse_args()
    if args.quick:
        args.duration = 4.0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
