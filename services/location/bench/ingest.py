"""`make bench-ingest`: the ingest pipeline end to end on this machine, phase by phase.

Starts a throwaway stack (PostgreSQL+PostGIS, Redis, Mosquitto; test settings: fsync off)
and the auth, vehicle, location and gateway services as processes, registers an org and
creates devices through the API (each device publishes over its own MQTT connection with its
own credentials), then runs these phases one after the other. Every ingest phase is drained
and verified (every published position stored, and seen on the live channel) before the
next begins, so no phase's backlog leaks into the next one's figures.

1. broker ceiling: the same publisher processes, as fast as the broker acknowledges, to
   `fleet/{uid}/bench`, read by a do-nothing QoS 1 subscriber (it only PUBACKs);
2. sustained at 10,000/s offered: positions committed and visible in Redis per second over
   the steady-state window (the publishing window minus its first seconds), read from the
   `fleet:live:{org}` messages the location service publishes after each commit; p50/p99
   publish -> visible latency; then the drain time and the verification;
3. for the ratio: offered rates stepped up from there (x1.25) to half the broker ceiling,
   stopping at the first one the pipeline does not keep up with; the ratio is the highest
   rate kept up with over the ceiling;
4. p99 publish -> committed (visible) at 5,000/s;
5. p99 publish -> WebSocket at 2,000/s (through the gateway's `/api/v1/ws`);
6. backlog replay (separately labelled, never the headline): devices publishing arrays;
7. with `--geofences N` (default 1,000): N geofences created in the org through the API,
   then phases 2, 4 and 5 again, so detection does real containment work;
8. one vehicle-day at 1 Hz (86,400 points) downsampled to 1,000 points, with 10 million
   rows in the telemetry table.

    make bench-ingest   # or: uv run python services/location/bench/ingest.py --help
"""

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detection import geofence
from loadgen import live_listener_main, null_subscriber_main, publisher_main

from fleet_common.redis import live_channel
from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import (
    REPO_ROOT,
    Stack,
    migrate,
    service_command,
    wait_until_live,
)

PASSWORD = "Bench-Passw0rd!"  # noqa: S105 - a throwaway org on a throwaway stack
CTX = mp.get_context("fork")
WARMUP_S = 3.0


# ------------------------------------------------------------------------- publishers


def run_publishers(
    port: int,
    devices: list[tuple[str, str]],
    processes: int,
    topic_kind: str,
    rate_per_s: float,
    duration_s: float,
    *,
    per_message: int = 1,
    max_inflight: int = 100,
) -> dict:
    """Publish from `processes` processes; blocks until all are done and acknowledged."""
    results = CTX.Queue()
    start_at = time.time() + 1.0 + len(devices) * 0.003
    shares = [devices[i::processes] for i in range(processes)]
    workers = [
        CTX.Process(
            daemon=True,
            target=publisher_main,
            args=(
                port,
                share,
                topic_kind,
                rate_per_s / processes,
                duration_s,
                start_at,
                per_message,
                max_inflight,
                results,
            ),
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=duration_s + 120) for _ in workers]
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise RuntimeError(f"a publisher failed: {failures[0]!r}")
    for worker in workers:
        worker.join()
    sent = sum(o[0] for o in outcomes)
    return {
        "messages": sent,
        "positions": sum(o[1] for o in outcomes),
        "acked": sum(o[2] for o in outcomes),
        "started": start_at,
        "ended": max(o[4] for o in outcomes),
        "publish_rate": sent / duration_s,
        "cpu_s": sum(o[5] for o in outcomes),
    }


# ------------------------------------------------------------------------- measurement


class CpuMeter:
    """CPU seconds used so far by the stack's servers and the location service (from /proc).

    PostgreSQL's count is its postmaster's own time, the time of the children it has
    reaped (cutime/cstime) and that of the backends alive now, so short-lived connections
    are not lost. Where the CPU goes per position is what bounds the rate on two cores.
    """

    def __init__(self, stack: Stack, location_pid: int) -> None:
        self._postmaster = int((stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        self._single = {
            "location": location_pid,
            "redis": int(stack.redis.pidfile.read_text()),
            "broker": int(stack.mosquitto.pidfile.read_text()),
        }

    @staticmethod
    def _stat(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    def sample(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, pid in self._single.items():
            fields = self._stat(pid)
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        fields = self._stat(self._postmaster)
        total = sum(int(v) for v in fields[11:15])
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    child = self._stat(int(entry))
                except OSError:
                    continue
                if int(child[1]) == self._postmaster:
                    total += int(child[11]) + int(child[12])
        out["postgres"] = total / tick
        return out


def cpu_per_item_us(before: dict, after: dict, items: int, **extra_s: float) -> dict[str, float]:
    """Microseconds of CPU per item (position or message) for each component, and the sum."""
    used = {name: after[name] - before[name] for name in after} | extra_s
    per_item = {name: 1e6 * seconds / max(items, 1) for name, seconds in used.items()}
    per_item["total"] = sum(per_item.values())
    return per_item


def format_cpu(per_item: dict[str, float]) -> str:
    parts = [f"{name} {value:.0f}" for name, value in per_item.items() if name != "total"]
    return f"{', '.join(parts)} = {per_item['total']:.0f} us"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def broker_step(
    stack: Stack, meter: CpuMeter, devices, processes: int, rate: float, duration_s: float
) -> dict:
    """Offer `rate` msg/s to a do-nothing QoS 1 subscriber; what it receives, steady state."""
    ready, results = CTX.Event(), CTX.Queue()
    cpu_before = meter.sample()
    subscriber = CTX.Process(
        daemon=True,
        target=null_subscriber_main,
        args=(
            stack.mosquitto.port,
            stack.mosquitto.ingest_username,
            stack.mosquitto.ingest_password,
            "fleet/+/bench",
            ready,
            results,
        ),
    )
    subscriber.start()
    if not ready.wait(30):
        raise RuntimeError("the null subscriber was not subscribed in time")
    published = run_publishers(
        stack.mosquitto.port, devices, processes, "bench", rate, duration_s, max_inflight=100
    )
    received, buckets, subscriber_cpu_s = results.get(timeout=120)
    subscriber.join()
    broker_s = meter.sample()["broker"] - cpu_before["broker"]
    window_start = published["started"] + WARMUP_S
    window_end = published["started"] + duration_s
    in_window = sum(n for at, n in buckets.items() if window_start <= at < window_end)
    return {
        "offered": rate,
        "published": published["messages"],
        "publish_rate": published["publish_rate"],
        "received": received,
        "rate": in_window / (window_end - window_start),
        "cpu_us": cpu_per_item_us(
            {},
            {},
            received,
            broker=broker_s,
            publishers=published["cpu_s"],
            subscriber=subscriber_cpu_s,
        ),
    }


def broker_ceiling(
    stack: Stack, meter: CpuMeter, devices, processes: int, duration_s: float
) -> dict:
    """The highest rate the broker delivers to a do-nothing subscriber without falling behind.

    Publishers that only wait for the broker's PUBACK outrun what it can forward (it queues,
    then drops, the rest), so the offered load is stepped up (x1.5) until the subscriber
    receives less than 95% of it or some is lost; the ceiling is the best received rate.
    """
    best: dict = {"rate": 0.0}
    rate = 8000.0
    while True:
        step = broker_step(stack, meter, devices, processes, rate, duration_s)
        keeping_up = step["rate"] >= 0.95 * step["publish_rate"] and (
            step["received"] >= step["published"]
        )
        print(
            f"  [ceiling] offered {rate:,.0f}/s: published {step['publish_rate']:,.0f}/s, "
            f"received {step['rate']:,.0f}/s steady, {step['received']:,}/"
            f"{step['published']:,} in all; CPU per message: {format_cpu(step['cpu_us'])}",
            flush=True,
        )
        if step["rate"] > best["rate"]:
            best = step
        if not keeping_up or step["publish_rate"] < 0.95 * rate:
            return best
        rate *= 1.5


async def stored_count(dsn: str, org_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM telemetry WHERE org_id = $1", uuid.UUID(org_id)
        )
    finally:
        await conn.close()


COUNTERS = (
    "telemetry_redis_errors_total",
    "telemetry_write_errors_total",
    "telemetry_observer_errors_total",
    "telemetry_duplicates_total",
)


async def location_counters(url: str) -> dict[str, float]:
    """The location service's error counters (summed over labels), from its /metrics."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


async def ingest_phase(
    ctx: dict,
    label: str,
    rate: float,
    duration_s: float,
    *,
    per_message: int = 1,
    via_ws: bool = False,
    drain_timeout_s: float = 180.0,
) -> dict:
    """Offer `rate` messages/s for `duration_s`, drain, verify; figures for this phase only."""
    stack: Stack = ctx["stack"]
    before = await stored_count(ctx["dsn"], ctx["org_id"])
    counters_before = await location_counters(ctx["location_url"])
    ws_arrivals: list[tuple[float, str]] = []
    stop_ws = asyncio.Event()
    ws_task = None
    listener = None
    if via_ws:
        connected = asyncio.Event()

        async def from_ws() -> None:
            async with websockets.connect(ctx["ws_url"], max_queue=None) as ws:
                connected.set()
                while not stop_ws.is_set():
                    try:
                        data = await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        continue
                    message = json.loads(data)
                    if message.get("type") == "ping":
                        await ws.send('{"type": "pong"}')
                    elif message.get("type") == "position":
                        at = time.time()
                        ws_arrivals.append((at, message["data"]["recorded_at"].rstrip("Z")))

        ws_task = asyncio.create_task(from_ws())
        await asyncio.wait_for(connected.wait(), 30)
    else:
        ready, stop, results = CTX.Event(), CTX.Event(), CTX.Queue()
        seen = CTX.Value("q", 0, lock=False)
        listener = CTX.Process(
            daemon=True,
            target=live_listener_main,
            args=(stack.redis.port, live_channel(ctx["org_id"]), ready, stop, seen, results),
        )
        listener.start()
        if not await asyncio.to_thread(ready.wait, 30):
            raise RuntimeError("the live listener was not subscribed in time")
    await asyncio.sleep(0.3)
    cpu_before = ctx["cpu"].sample()
    published = await asyncio.to_thread(
        run_publishers,
        stack.mosquitto.port,
        ctx["devices"],
        ctx["publishers"],
        "telemetry",
        rate,
        duration_s,
        per_message=per_message,
    )
    expected = before + published["positions"]
    print(f"  [{label}] published {published['positions']:,}; draining", flush=True)
    drain_started = time.time()
    stored = before

    def visible() -> int:
        return len(ws_arrivals) if via_ws else seen.value

    # Drained: every position stored, and every one seen on the live channel (the Redis
    # step follows the commit), so nothing of this phase spills into the next one.
    # Gives up after 15 s without progress: whatever is missing then was lost (the broker
    # drops what exceeds its queue limit for a subscriber that has fallen that far behind).
    progress, progressed_at = (stored, 0), time.time()
    while time.time() - drain_started < drain_timeout_s:
        stored = await stored_count(ctx["dsn"], ctx["org_id"])
        if stored >= expected and visible() >= published["positions"]:
            break
        if (stored, visible()) != progress:
            progress, progressed_at = (stored, visible()), time.time()
        elif time.time() - progressed_at > 15.0:
            break
        await asyncio.sleep(0.25)
    drained_at = progressed_at if stored < expected else time.time()
    cpu_us = cpu_per_item_us(
        cpu_before, ctx["cpu"].sample(), stored - before, publishers=published["cpu_s"]
    )
    if via_ws:
        stop_ws.set()
        await ws_task
        arrivals = ws_arrivals
    else:
        stop.set()
        arrivals = await asyncio.to_thread(results.get, True, 120)
        listener.join()
    times = [at for at, _ in arrivals]
    latencies = [
        at - datetime.fromisoformat(recorded).replace(tzinfo=UTC).timestamp()
        for at, recorded in arrivals
    ]
    window_start = published["started"] + WARMUP_S
    window_end = published["started"] + duration_s
    in_window = sum(1 for at in times if window_start <= at < window_end)
    result = {
        "label": label,
        "offered_msgs_per_s": rate,
        "positions_per_message": per_message,
        "published_positions": published["positions"],
        "publish_rate_msgs": published["publish_rate"],
        "committed_per_s": in_window / max(window_end - window_start, 1e-9),
        "stored": stored - before,
        "visible": len(arrivals),
        "drain_s": max(0.0, drained_at - (published["started"] + duration_s)),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "cpu_us": cpu_us,
    }
    counters = await location_counters(ctx["location_url"])
    result["errors"] = {
        name.removeprefix("telemetry_").removesuffix("_total"): int(value - counters_before[name])
        for name, value in counters.items()
        if value - counters_before[name]
    }
    result["verified"] = (
        result["stored"] == published["positions"] and result["visible"] >= result["stored"]
    )
    print(
        f"  [{label}] offered {rate * per_message:,.0f} positions/s "
        f"(publishers achieved {published['publish_rate'] * per_message:,.0f}/s): "
        f"committed+visible {result['committed_per_s']:,.0f}/s in the steady window; "
        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; "
        f"stored {result['stored']:,}/{published['positions']:,}, visible {len(arrivals):,}; "
        f"drained {result['drain_s']:.1f} s after publishing ended; "
        f"location counters {result['errors'] or 'no errors'}; CPU per position: "
        f"{format_cpu(cpu_us)}",
        flush=True,
    )
    return result


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
        process = subprocess.Popen(  # noqa: S603 - our own uvicorn command
            service_command(service, ports[service]),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        processes.append(process)
        # Generous: on a loaded machine importing a service alone can take a minute.
        wait_until_live(ports[service], process=process, timeout_s=240)
    return {"urls": urls, "env": env}, processes


def stop_services(processes: list, stack: Stack, state: Path) -> None:
    """The services, the servers and their folder: what start_services and Stack made."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(15)
    stack.stop()
    remove_tree(state)


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


async def create_geofences(api: str, token: str, count: int) -> float:
    """`count` geofences (half polygons, half circles) over the devices' city, via the API."""
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()

    bodies = [geofence(i, rng) for i in range(count)]
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:

        async def worker(part: list[dict]) -> None:
            for item in part:
                response = await http.post("/api/v1/geofences", json=item, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(worker(bodies[i::8]) for i in range(8)))
    return time.perf_counter() - started


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def ingest_suite(ctx: dict, args, ceiling: float, tag: str) -> dict:
    """Phases 2 to 5 (and the backlog replay when asked) with the org as it is now."""
    seconds = args.seconds
    out: dict = {}
    out["sustained"] = await ingest_phase(ctx, f"{tag} {args.rate:,}/s", args.rate, seconds)
    out["steps"] = await highest_kept_up(ctx, args, ceiling, tag, out["sustained"])
    out["at_5k"] = await ingest_phase(ctx, f"{tag} 5,000/s", 5000, seconds)
    out["at_2k"] = await ingest_phase(ctx, f"{tag} 2,000/s WS", 2000, seconds, via_ws=True)
    if args.backlog:
        out["backlog"] = await ingest_phase(
            ctx,
            f"{tag} backlog x{args.backlog}",
            args.rate / args.backlog,
            seconds,
            per_message=args.backlog,
        )
    return out


def kept_up(phase: dict) -> bool:
    """The pipeline kept pace with what the publishers achieved: (nearly) all of it committed
    in the steady window, the backlog gone within seconds, every position verified."""
    offered = phase["publish_rate_msgs"] * phase["positions_per_message"]
    return phase["verified"] and phase["committed_per_s"] >= 0.97 * offered and phase["drain_s"] < 3


async def highest_kept_up(ctx: dict, args, ceiling: float, tag: str, first: dict) -> list[dict]:
    """Offered rates up from `--rate`, x1.25 a step, up to half the ceiling; stops at the
    first the pipeline does not keep up with. A rate far past capacity measures less than
    capacity (the publishers and the broker take the cores), so the ratio is taken at the
    highest rate kept up with, not at one overloaded rate."""
    steps: list[dict] = []
    half = math.ceil(ceiling / 2)
    rate = args.rate
    phase = first
    while kept_up(phase) and rate < half:
        rate = min(math.ceil(rate * 1.25), half)
        phase = await ingest_phase(ctx, f"{tag} step {rate:,}/s", rate, args.seconds)
        steps.append(phase)
    return steps


def print_suite(title: str, suite: dict, ceiling: float, rate: int) -> None:
    sustained = suite["sustained"]
    phases = [sustained, *suite["steps"]]
    best_phase = max(
        (p for p in phases if kept_up(p)), key=lambda p: p["committed_per_s"], default=None
    )
    best = best_phase["committed_per_s"] if best_phase else 0.0
    ratio = best / ceiling if ceiling else 0.0
    ok_sustained = sustained["committed_per_s"] >= 0.98 * 10_000 and sustained["verified"]
    print(f"--- {title}")
    print(
        f"sustained end to end   {sustained['committed_per_s']:>9,.0f} positions/s committed and "
        f"visible at {rate:,}/s offered (publishers achieved "
        f"{sustained['publish_rate_msgs']:,.0f}/s; p50 {sustained['p50_ms']:.0f} ms, p99 "
        f"{sustained['p99_ms']:.0f} ms; drained {sustained['drain_s']:.1f} s after; "
        f"verified {sustained['verified']})   goal >= 10,000/s: {goal(ok_sustained)}"
    )
    for step in suite["steps"]:
        print(
            f"step up                {step['committed_per_s']:>9,.0f} positions/s at "
            f"{step['offered_msgs_per_s']:,.0f}/s offered (p99 {step['p99_ms']:.0f} ms; drained "
            f"{step['drain_s']:.1f} s after; verified {step['verified']}; kept up "
            f"{kept_up(step)})"
        )
    print(
        f"ratio to the ceiling   {ratio:>9.2f}   (highest rate kept up with {best:,.0f}/s / "
        f"ceiling {ceiling:,.0f}/s)   goal >= 0.5: {goal(ratio >= 0.5)}"
    )
    # Everything shares the cores, so the CPU each position costs bounds the rate.
    measured = best_phase or sustained
    cpu = measured["cpu_us"]
    cores = os.cpu_count() or 1
    bound = cores * 1e6 / cpu["total"]
    # What the servers alone (not our code, not the load generators) would need at half the
    # ceiling, at the CPU per position they cost here: above the cores, no ingest code can
    # reach the ratio on this machine.
    servers_cores = (cpu["postgres"] + cpu["redis"] + cpu["broker"]) * ceiling / 2 / 1e6
    print(
        f"CPU per position       {format_cpu(cpu)} at {measured['offered_msgs_per_s']:,}/s "
        f"offered; all cores fully used would carry at most {bound:,.0f}/s (ratio "
        f"{bound / ceiling:.2f}); at half the ceiling PostgreSQL, Redis and the broker alone "
        f"would need {servers_cores:.1f} of {cores} cores"
    )
    at_5k = suite["at_5k"]
    print(
        f"p99 at 5,000/s         {at_5k['p99_ms']:>9.0f} ms publish->committed+visible "
        f"(p50 {at_5k['p50_ms']:.0f} ms, {at_5k['committed_per_s']:,.0f}/s; verified "
        f"{at_5k['verified']})   goal < 1000 ms: "
        f"{goal(at_5k['p99_ms'] < 1000 and at_5k['verified'])}"
    )
    at_2k = suite["at_2k"]
    print(
        f"p99 at 2,000/s         {at_2k['p99_ms']:>9.0f} ms publish->WebSocket "
        f"(p50 {at_2k['p50_ms']:.0f} ms, {at_2k['committed_per_s']:,.0f}/s; verified "
        f"{at_2k['verified']})   goal < 250 ms: "
        f"{goal(at_2k['p99_ms'] < 250 and at_2k['verified'])}"
    )
    backlog = suite.get("backlog")
    if backlog:
        print(
            f"(not the headline) backlog replay, {backlog['positions_per_message']} positions "
            f"per message: {backlog['committed_per_s']:,.0f} positions/s committed at "
            f"{backlog['offered_msgs_per_s'] * backlog['positions_per_message']:,.0f}/s "
            f"offered (p99 {backlog['p99_ms']:.0f} ms; verified {backlog['verified']})"
        )


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
        ctx = {
            "stack": stack,
            "org_id": org_id,
            "devices": devices,
            "publishers": args.publishers,
            "dsn": stack.postgres.url("location_db", driver="postgresql"),
            "location_url": setup["urls"]["location"],
            "ws_url": gateway.replace("http://", "ws://") + f"/api/v1/ws?token={token}",
        }
        ctx["cpu"] = CpuMeter(stack, processes[2].pid)
        print(f"location process: pid {processes[2].pid}", flush=True)
        # The device cache fills on the first message of each device: warm it up first.
        await ingest_phase(ctx, "warm-up", 1000, 5.0)

        ceiling = broker_ceiling(
            stack, ctx["cpu"], devices, args.publishers, min(args.seconds, 8.0)
        )
        print(
            f"broker ceiling: {ceiling['rate']:,.0f} msg/s received by a do-nothing QoS 1 "
            f"subscriber ({ceiling['publish_rate']:,.0f}/s published by {args.publishers} "
            f"publisher processes, {ceiling['received']:,}/{ceiling['published']:,} received)",
            flush=True,
        )
        suites = {"no geofences": await ingest_suite(ctx, args, ceiling["rate"], "plain")}
        if args.geofences:
            took = await create_geofences(gateway, token, args.geofences)
            print(f"created {args.geofences:,} geofences in {took:.1f} s", flush=True)
            await asyncio.sleep(1.0)
            suites[f"{args.geofences:,} geofences in the org"] = await ingest_suite(
                ctx, args, ceiling["rate"], "geofences"
            )
        history = None
        if args.rows:
            history = await downsampling(stack, setup["urls"]["location"], token, org_id, args.rows)
            print(f"downsampling: {history}", flush=True)

        load = os.getloadavg()
        print(
            f"\n=== ingest benchmark ({os.cpu_count()} cores, everything on this machine; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==="
        )
        print(
            f"broker ceiling         {ceiling['rate']:>9,.0f} msg/s (do-nothing QoS 1 subscriber, "
            f"{args.publishers} publisher processes, {args.devices} device connections; CPU "
            f"per message: {format_cpu(ceiling['cpu_us'])})"
        )
        if ceiling["rate"] < 10_000:
            print(
                "  the broker's own ceiling on this machine is below 10,000/s: the honest goal "
                "is the ratio"
            )
        for title, suite in suites.items():
            print_suite(title, suite, ceiling["rate"], args.rate)
        if history:
            print(
                f"vehicle-day downsample {history['median_ms']:>9.0f} ms median "
                f"({history['first_ms']:.0f} ms cold) {history['total_points']:,} -> "
                f"{history['points']} points, {history['rows']:,} rows in the table   "
                f"goal < 200 ms: {goal(history['median_ms'] < 200)}"
            )
    finally:
        stop_services(processes, stack, state)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--rate", type=int, default=10_000, help="offered positions/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="publishing per phase")
    parser.add_argument("--rows", type=int, default=10_000_000, help="0 skips the history")
    parser.add_argument("--geofences", type=int, default=1000, help="0 skips that suite")
    parser.add_argument(
        "--backlog", type=int, default=20, help="positions per message in the replay (0: skip)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
