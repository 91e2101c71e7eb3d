"""`make bench-ingest`: the ingest pipeline end to end on this machine.

Starts a throwaway stack (PostgreSQL+PostGIS, Redis, Mosquitto; test settings: fsync off)
and the auth, vehicle, location and gateway services as processes, registers an org and
creates devices through the API (each device publishes with its own broker credentials),
then measures:

1. the broker's ceiling: publishers as fast as they can to `fleet/{uid}/bench`, which only a
   do-nothing QoS 1 subscriber reads;
2. sustained ingest at a fixed offered load: published -> committed and visible in Redis
   (the `fleet:live` message, sent only after the commit and the latest-hash update);
3. p99 publish -> committed at 5,000/s;
4. p99 publish -> WebSocket at 2,000/s (through the gateway's `/api/v1/ws`);
5. one vehicle-day at 1 Hz (86,400 points) downsampled to 1,000 points, with 10 million
   rows in the telemetry table.
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import websockets
from paho.mqtt.enums import CallbackAPIVersion
from redis.asyncio import Redis

from fleet_common.redis import live_channel
from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live

PASSWORD = "Bench-Passw0rd!"  # noqa: S105 - a throwaway org on a throwaway stack


# ------------------------------------------------------------------------- publishers


def publisher_main(port, devices, topic_kind, rate_per_s, duration_s, start_at, counter):
    """One process driving a share of the devices; `rate_per_s` 0 means as fast as it can."""
    clients = []
    for uid, password in devices:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv311)
        client.username_pw_set(uid, password)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append((uid, client))
    while time.time() < start_at:
        time.sleep(0.001)
    sent = 0
    ends_at = start_at + duration_s
    interval = len(clients) / rate_per_s if rate_per_s else 0.0
    next_round = start_at
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    while True:
        now = time.time()
        if now >= ends_at:
            break
        for uid, client in clients:
            if topic_kind == "bench":
                payload = b"{}"
            else:
                # Unique ts per position (a redelivery would still be stored once).
                ts = now if rate_per_s else (base + timedelta(microseconds=sent)).timestamp()
                payload = b'{"ts": %.6f, "lat": 10.5, "lon": 106.5, "speed": 40}' % ts
            client.publish(f"fleet/{uid}/{topic_kind}", payload, qos=1)
            sent += 1
        if interval:
            next_round += interval
            delay = next_round - time.time()
            if delay > 0:
                time.sleep(delay)
    for _uid, client in clients:
        client.disconnect()
        client.loop_stop()
    with counter.get_lock():
        counter.value += sent


def run_publishers(port, devices, processes, topic_kind, rate_per_s, duration_s) -> int:
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    start_at = time.time() + 2.0 + len(devices) * 0.002
    share = [devices[i::processes] for i in range(processes)]
    workers = [
        ctx.Process(
            target=publisher_main,
            args=(port, part, topic_kind, rate_per_s / processes, duration_s, start_at, counter),
        )
        for part in share
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value


# ------------------------------------------------------------------------- measurement


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def broker_ceiling(stack: Stack, devices, processes: int, duration_s: float) -> float:
    received = 0
    first = last = 0.0

    def on_message(_c, _u, _m) -> None:
        nonlocal received, first, last
        last = time.time()
        if received == 0:
            first = last
        received += 1

    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"null-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv311,
    )
    sub.username_pw_set(stack.mosquitto.ingest_username, stack.mosquitto.ingest_password)
    sub.on_message = on_message
    sub.connect("127.0.0.1", stack.mosquitto.port)
    sub.subscribe("fleet/+/bench", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    sent = run_publishers(stack.mosquitto.port, devices, processes, "bench", 0, duration_s)
    deadline = time.time() + 30
    while received < sent and time.time() < deadline:
        time.sleep(0.1)
    sub.disconnect()
    sub.loop_stop()
    return received / max(last - first, 1e-9)


async def ingest_run(stack, org_id, devices, processes, rate, duration_s, ws_url=None):
    """Offer `rate` positions/s for `duration_s`; latency from each position's own ts to its
    `fleet:live` message (or WebSocket message)."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def from_redis() -> None:
        redis = Redis.from_url(stack.redis.url)
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(live_channel(org_id))
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message:
                    record(message["data"])
        await redis.aclose()

    async def from_ws() -> None:
        async with websockets.connect(ws_url, max_queue=None) as ws:
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed as exc:
                    print(f"WebSocket closed early: {exc}", flush=True)
                    return
                message = json.loads(data)
                if message.get("type") == "ping":
                    await ws.send('{"type": "pong"}')
                elif message.get("type") == "position":
                    record(data)

    def record(data) -> None:
        now = time.time()
        document = json.loads(data)["data"]
        sent = datetime.fromisoformat(document["recorded_at"]).timestamp()
        latencies.append(now - sent)

    listener = asyncio.create_task(from_ws() if ws_url else from_redis())
    await asyncio.sleep(0.5)
    started = time.time()
    sent = await asyncio.to_thread(
        run_publishers, stack.mosquitto.port, devices, processes, "telemetry", rate, duration_s
    )
    deadline = time.time() + 60
    while len(latencies) < sent and time.time() < deadline:  # noqa: ASYNC110 - a bounded drain
        await asyncio.sleep(0.1)
    finished = time.time()
    stop.set()
    await listener
    publish_window = finished - started - 2.0  # publishers start 2 s after spawning
    return {
        "offered_per_s": rate,
        "sent": sent,
        "visible": len(latencies),
        "throughput_per_s": len(latencies) / max(publish_window, duration_s),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


# ------------------------------------------------------------------------- setup


def start_services(stack: Stack, state: Path) -> tuple[dict, list]:
    ports = {name: free_port() for name in ("auth", "vehicle", "location", "gateway")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": f"{urls['auth']}/.well-known/jwks.json",
        "INTERNAL_SERVICE_TOKEN": stack.secrets["internal_token"],
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(stack.mosquitto.port),
        "VEHICLE_MQTT_ADMIN_USERNAME": stack.mosquitto.admin_username,
        "VEHICLE_MQTT_ADMIN_PASSWORD": stack.mosquitto.admin_password,
        "LOCATION_MQTT_USERNAME": stack.mosquitto.ingest_username,
        "LOCATION_MQTT_PASSWORD": stack.mosquitto.ingest_password,
        "LOCATION_VEHICLE_URL": urls["vehicle"],
        "LOCATION_MQTT_CLIENT_ID": "bench-location",
        "AUTH_KEYS_DIR": str(state / "keys"),
        "GATEWAY_AUTH_URL": urls["auth"],
        "GATEWAY_VEHICLE_URL": urls["vehicle"],
        "GATEWAY_LOCATION_URL": urls["location"],
        "GATEWAY_RATE_LIMITS": '{"api": {"requests": 100000, "window_s": 60}}',
        # The bench reads as fast as it can, but shares two cores with everything else.
        "GATEWAY_WS_QUEUE_SIZE": "1000000",
    }
    for service in ("auth", "vehicle", "location"):
        database = f"{service}_db"
        stack.postgres.create_database(database, postgis=service == "location")
        env[f"{service.upper()}_DATABASE_URL"] = stack.postgres.url(database)
        migrate(service, env)
    processes = []
    for service in ("auth", "vehicle", "location", "gateway"):
        log = open(state / f"{service}.log", "w")  # noqa: SIM115 - lives as long as the process
        process = __import__("subprocess").Popen(
            service_command(service, ports[service]),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        processes.append(process)
        wait_until_live(ports[service], process=process)
    return {"urls": urls, "env": env}, processes


def create_devices(api: str, count: int) -> tuple[str, str, list[tuple[str, str]]]:
    with httpx.Client(base_url=api, timeout=60) as http:
        registered = (
            http.post(
                "/api/v1/auth/register",
                json={
                    "org_name": "Bench",
                    "email": f"bench-{uuid.uuid4().hex[:6]}@example.com",
                    "password": PASSWORD,
                    "full_name": "Bench",
                },
            )
            .raise_for_status()
            .json()
        )
        token = registered["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        devices = []
        vehicle_id = None
        for i in range(count):
            vehicle = (
                http.post(
                    "/api/v1/vehicles",
                    headers=headers,
                    json={"name": f"Bench {i}", "plate": f"B-{i:05d}"},
                )
                .raise_for_status()
                .json()
            )
            vehicle_id = vehicle_id or vehicle["id"]
            device = (
                http.post(
                    "/api/v1/devices",
                    headers=headers,
                    json={
                        "uid": f"bench-{uuid.uuid4().hex[:8]}",
                        "name": f"Bench {i}",
                        "vehicle_id": vehicle["id"],
                    },
                )
                .raise_for_status()
                .json()
            )
            devices.append((device["uid"], device["credentials"]["password"]))
    return registered["org"]["id"], token, devices


async def downsampling(stack: Stack, api: str, token: str, org_id: str, rows: int) -> dict:
    """10M rows (generate_series), one of them a vehicle-day at 1 Hz; time the query."""
    dsn = stack.postgres.url("location_db", driver="postgresql")
    conn = await asyncpg.connect(dsn)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    vehicle_id = uuid.uuid4()
    started = time.perf_counter()
    filler = rows - 86_400
    # Other vehicles' traffic spread over the same 3 days (1000 devices).
    await conn.execute(
        """
        INSERT INTO telemetry (device_id, recorded_at, org_id, vehicle_id, geog, speed_kph)
        SELECT md5('d' || (g % 1000))::uuid, $1::timestamptz + (g * interval '25 ms'),
            $2::uuid, md5('v' || (g % 1000))::uuid,
            ST_SetSRID(ST_MakePoint(106 + (g % 1000) * 0.001, 10 + (g % 977) * 0.001), 4326)
                ::geography,
            40
        FROM generate_series(1, $3) AS g
        """,
        day - timedelta(hours=12),
        uuid.UUID(org_id),
        filler,
    )
    # The vehicle-day: a winding road, one point a second.
    await conn.execute(
        """
        INSERT INTO telemetry
            (device_id, recorded_at, org_id, vehicle_id, geog, speed_kph, ignition)
        SELECT $1::uuid, $2::timestamptz + g * interval '1 s', $3::uuid, $4::uuid,
            ST_SetSRID(ST_MakePoint(106 + g * 0.00001 + 0.01 * sin(g / 600.0),
                                    10 + 0.02 * sin(g / 1500.0) + 0.005 * cos(g / 97.0)),
                       4326)::geography,
            30 + 20 * sin(g / 300.0), true
        FROM generate_series(0, 86399) AS g
        """,
        uuid.uuid4(),
        day,
        uuid.UUID(org_id),
        vehicle_id,
    )
    await conn.execute("ANALYZE telemetry")
    total = await conn.fetchval("SELECT count(*) FROM telemetry")
    loaded_s = time.perf_counter() - started
    await conn.close()
    timings = []
    points = 0
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        params = {
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "max_points": 1000,
        }
        for _ in range(6):
            began = time.perf_counter()
            response = await http.get(
                f"/api/v1/vehicles/{vehicle_id}/history",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
            timings.append(time.perf_counter() - began)
            response.raise_for_status()
            body = response.json()
            points = len(body["points"])
    return {
        "rows": total,
        "load_s": loaded_s,
        "points": points,
        "total_points": body["total_points"],
        "first_ms": timings[0] * 1000,
        "median_ms": statistics.median(timings[1:]) * 1000,
    }


def goal(ok: bool) -> str:
    return "MET" if ok else "MISSED"


async def main_async(args) -> None:
    state = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    os.chmod(state, 0o755)  # noqa: S103 - postgres and mosquitto run as their own users
    stack = Stack.create(
        state, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    processes = []
    try:
        stack.start()
        setup, processes = start_services(stack, state)
        gateway = setup["urls"]["gateway"]
        print(
            f"stack up under {state}; creating {args.devices} devices through the API", flush=True
        )
        org_id, token, devices = create_devices(gateway, args.devices)
        await asyncio.sleep(1.0)

        ceiling = broker_ceiling(stack, devices, args.publishers, args.seconds)
        print(f"broker ceiling (do-nothing QoS 1 subscriber): {ceiling:,.0f} msg/s", flush=True)
        sustained = await ingest_run(
            stack, org_id, devices, args.publishers, args.rate, args.seconds
        )
        print(f"sustained at {args.rate:,}/s offered: {sustained}", flush=True)
        at_5k = await ingest_run(stack, org_id, devices, args.publishers, 5000, args.seconds)
        print(f"at 5,000/s: {at_5k}", flush=True)
        ws_url = gateway.replace("http://", "ws://") + f"/api/v1/ws?token={token}"
        at_2k = await ingest_run(
            stack, org_id, devices, args.publishers, 2000, args.seconds, ws_url=ws_url
        )
        print(f"at 2,000/s via WebSocket: {at_2k}", flush=True)
        history = await downsampling(stack, setup["urls"]["location"], token, org_id, args.rows)
        print(f"downsampling: {history}", flush=True)

        ratio = sustained["throughput_per_s"] / ceiling if ceiling else 0.0
        print("\n=== ingest benchmark (2 cores, everything on this machine) ===")
        print(
            f"sustained end to end  {sustained['throughput_per_s']:>10,.0f} positions/s at "
            f"{args.rate:,}/s offered (p50 {sustained['p50_ms']:.0f} ms, "
            f"p99 {sustained['p99_ms']:.0f} ms; {sustained['visible']:,}/{sustained['sent']:,} "
            f"visible)   goal >= 10,000/s: {goal(sustained['throughput_per_s'] >= 10_000)}"
        )
        print(f"broker ceiling        {ceiling:>10,.0f} msg/s (null subscriber)")
        print(f"ratio                 {ratio:>10.2f}   goal >= 0.5: {goal(ratio >= 0.5)}")
        print(
            f"p99 at 5,000/s        {at_5k['p99_ms']:>10.0f} ms publish->committed "
            f"(throughput {at_5k['throughput_per_s']:,.0f}/s)   goal < 1000 ms: "
            f"{goal(at_5k['p99_ms'] < 1000 and at_5k['visible'] >= at_5k['sent'])}"
        )
        print(
            f"p99 at 2,000/s        {at_2k['p99_ms']:>10.0f} ms publish->WebSocket "
            f"(throughput {at_2k['throughput_per_s']:,.0f}/s)   goal < 250 ms: "
            f"{goal(at_2k['p99_ms'] < 250 and at_2k['visible'] >= at_2k['sent'])}"
        )
        print(
            f"vehicle-day downsample {history['median_ms']:>9.0f} ms median "
            f"({history['first_ms']:.0f} ms cold) {history['total_points']:,} -> "
            f"{history['points']} points, {history['rows']:,} rows in the table   "
            f"goal < 200 ms: {goal(history['median_ms'] < 200)}"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        stack.stop()
        remove_tree(state)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--rate", type=int, default=10_000, help="offered positions/s")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rows", type=int, default=10_000_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
