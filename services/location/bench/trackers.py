"""`make bench-trackers`: Teltonika over TCP against MQTT, and 10,000 held connections.

Starts a throwaway stack and the services as processes (ingest.py's harness), then:

1. 10,000 concurrent connections each sending one record every 10 s (1,000 records/s):
   p50/p99 due -> acknowledged (received, committed, answered), the server's own
   receive -> commit p99 (its histogram, per batch) and the location process's highest
   resident memory through the window with them all held. Goals: p99 under 1 s, under
   300 MB. Each record is timed from when it was due on its fixed schedule, not from its
   write (a late answer delays the next record; timing from the write would hide it), and
   how late the load generator itself wrote is reported apart (its send lag);
2. Teltonika: 2,000 concurrent connections each sending 10-record Codec 8 packets, the next
   as soon as the previous one is acknowledged (which is after its commit); records
   committed per second over the steady window, read from the database;

Phases 1 and 2 begin only once every connection is up (10,000 handshakes, each a device
lookup, take a minute or more here): no figure counts connection set-up, or records sent
while the other devices still connect.
3. MQTT baseline: devices publishing arrays of 10 positions faster than the pipeline takes
   them (ingest.py's publishers); records committed per second over the same kind of
   window. Goal: Teltonika at least 0.8 x this rate.

The MQTT phase comes last: its publishers offer more than the pipeline commits, and the
broker holds the rest (up to 128 MB) for the location service, which goes on committing it
for minutes after the phase; any phase after it would be measured against that backlog (and
the process's resident memory stays at its high-water mark).

Trackers are registered in the vehicle database directly (creating 10,000 through the API
would take the whole run); the location service still looks each up through the vehicle
service's internal API at its handshake, as in production.

    make bench-trackers            # the full run (several minutes)
    make bench-trackers QUICK=1    # 300 / 1,000 connections, short windows
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    WARMUP_S,
    CpuMeter,
    cpu_per_item_us,
    create_devices,
    format_cpu,
    percentile,
    run_publishers,
    start_services,
    stored_count,
)

from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import Stack
from fleet_location.trackers import teltonika

CTX = mp.get_context("fork")
RECORDS_PER_PACKET = 10


def raise_fd_limit() -> int:
    """10,000 connections need 10,000 descriptors on each side: as many as allowed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def register_trackers(dsn: str, org_id: str, count: int) -> list[str]:
    imeis = [f"35{i:013d}" for i in range(count)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "devices",
            records=[
                (uuid.uuid4(), uuid.UUID(org_id), imei, f"bench {imei}", "teltonika", True, False)
                for imei in imeis
            ],
            columns=(
                "id",
                "org_id",
                "uid",
                "name",
                "protocol",
                "active",
                "credentials_reset_required",
            ),
        )
    finally:
        await conn.close()
    return imeis


def packet(start: datetime, first_second: int, count: int) -> bytes:
    return teltonika.encode_avl(
        [
            teltonika.AvlRecord(
                recorded_at=start + timedelta(seconds=first_second + i),
                priority=0,
                lon=106.7 + (first_second + i) % 1000 / 1e5,
                lat=10.77,
                altitude_m=5,
                angle_deg=90,
                satellites=8,
                speed_kph=30,
                event_io=0,
                io={239: 1},
            )
            for i in range(count)
        ]
    )


# ------------------------------------------------------------------------- load processes


# Handshakes in progress per load process: each is a device lookup in the vehicle service
# (the location cache was warmed before these trackers existed), so they are let in gradually
# as a fleet reconnecting after a restart would be by its own back-off.
_HANDSHAKES = 50
CONNECT_TIMEOUT_S = 900.0


async def _connect(port: int, imei: str, deadline: float, gate: asyncio.Semaphore):
    while True:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(teltonika.encode_imei(imei))
                if await reader.readexactly(1) == teltonika.ACCEPT:
                    return reader, writer
                writer.close()
            except (OSError, asyncio.IncompleteReadError):
                pass
        if time.time() > deadline:
            raise RuntimeError(f"{imei} could not connect")
        await asyncio.sleep(1.0)


async def _connect_all(port: int, imeis: list[str], connected, go_at) -> tuple[list, float]:
    """Every connection handshaken, then the common start the parent sets once all load
    processes have theirs: no phase measures connection set-up (each handshake is a device
    lookup in the vehicle service) or records sent while other devices still connect."""
    gate = asyncio.Semaphore(_HANDSHAKES)
    deadline = time.time() + CONNECT_TIMEOUT_S
    links = await asyncio.gather(*(_connect(port, imei, deadline, gate) for imei in imeis))
    with connected.get_lock():
        connected.value += len(links)
    while go_at.value == 0.0:  # noqa: ASYNC110 - set by another process, no Event crosses
        await asyncio.sleep(0.05)
    return links, go_at.value


class FloodPackets:
    """A connection's 10-record packets, one second apart, as `packet()` builds them, but
    made by patching one encoded packet's times and longitudes and its CRC: encoding each
    anew cost this load generator 65 µs a packet, on the two cores the service it measures
    shares (the MQTT publishers build their payloads as cheaply: loadgen.py)."""

    def __init__(self, start: datetime, count: int) -> None:
        self.start, self.count = start, count
        self.start_ms = round(start.timestamp() * 1000)
        self.template = bytearray(packet(start, 0, count))
        self.record_len = (len(self.template) - 12 - 3) // count

    def build(self, first_second: int) -> bytes:
        out = self.template
        for i in range(self.count):
            at = 10 + i * self.record_len  # 8-byte preamble and length, codec id, count
            second = first_second + i
            struct.pack_into(">Q", out, at, self.start_ms + second * 1000)
            struct.pack_into(">i", out, at + 9, round((106.7 + second % 1000 / 1e5) * 1e7))
        crc = teltonika.crc16_ibm(memoryview(out)[8:-4])
        struct.pack_into(">I", out, len(out) - 4, crc)
        return bytes(out)


async def _flood(port: int, imeis: list[str], window_s: float, connected, go_at) -> dict:
    """Each connection: a 10-record packet, its acknowledgement, the next packet.

    Connected with asyncio (the handshakes are paced), then driven over the raw sockets
    from one selector: asyncio streams cost this side more per packet than the server's
    own handling of it."""
    base = datetime.now(UTC) - timedelta(days=1)
    packets = FloodPackets(base, RECORDS_PER_PACKET)
    assert packets.build(70) == packet(base, 70, RECORDS_PER_PACKET)
    links, start_at = await _connect_all(port, imeis, connected, go_at)
    socks = []
    for _reader, writer in links:
        socks.append(socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno())))
        writer.transport.abort()  # its descriptor only: the connection lives on in the dup
    await asyncio.sleep(0)
    return await asyncio.to_thread(_drive, socks, packets, start_at + window_s)


def _drive(socks: list[socket.socket], packets: FloodPackets, stop_at: float) -> dict:
    selector = selectors.DefaultSelector()
    seconds = dict.fromkeys(socks, 0)
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sock.send(packets.build(0))  # a few hundred bytes: an empty send buffer takes them
    acked = 0
    while time.time() < stop_at:
        for key, _events in selector.select(0.1):
            sock = key.fileobj
            if len(sock.recv(16)) != 4:  # one packet in flight: its 4-byte answer, or EOF
                raise ConnectionError("the listener closed a flood connection")
            acked += 1
            seconds[sock] += RECORDS_PER_PACKET
            sock.send(packets.build(seconds[sock]))
    for sock in socks:
        sock.close()
    return {"acked": acked}


async def _steady(
    port: int, imeis: list[str], window_s: float, period_s: float, connected, go_at
) -> dict:
    """Each connection: one record every `period_s` at its own phase, on a fixed schedule.

    A record's latency runs from when it was due, not from when it was written: a late
    acknowledgement delays the device's next record (one packet in flight, as a tracker
    does), and timing from the write would hide that delay (coordinated omission). How late
    the writes themselves were is kept apart (`send_lag`): it is this load generator's own
    delay, which would otherwise pass for the server's."""
    # Each record is a fix of the moment it is due, as a live tracker's: stamped an hour
    # back (as this phase once was), every device's newest position would be older than the
    # offline threshold, and each offline sweep would turn all 10,000 offline, the next
    # record back online (two events per device and sweep that no live fleet causes).
    links, start_at = await _connect_all(port, imeis, connected, go_at)
    stop_at = start_at + window_s
    latencies: list[float] = []
    send_lags: list[float] = []

    async def device(index: int, reader, writer) -> None:
        phase_s = (index * 0.6180339887) % 1.0 * period_s
        k = 0
        while (due := start_at + phase_s + k * period_s) < stop_at:
            await asyncio.sleep(max(0.0, due - time.time()))
            send_lags.append(time.time() - due)
            fixed_at = datetime.fromtimestamp(due, UTC)
            writer.write(packet(fixed_at - timedelta(seconds=k), k, 1))  # moving: lon by k
            await reader.readexactly(4)
            latencies.append(time.time() - due)
            k += 1
        # Held open until the parent has measured the memory with everything connected.
        await asyncio.sleep(max(0.0, stop_at + 5 - time.time()))
        writer.close()

    await asyncio.gather(*(device(i, r, w) for i, (r, w) in enumerate(links)))
    return {"latencies": latencies, "send_lags": send_lags, "held": len(links)}


def load_main(kind: str, port: int, imeis: list[str], timing: dict, connected, go_at, results):
    raise_fd_limit()
    try:
        if kind == "flood":
            outcome = asyncio.run(_flood(port, imeis, timing["window_s"], connected, go_at))
        else:
            outcome = asyncio.run(
                _steady(port, imeis, timing["window_s"], timing["period_s"], connected, go_at)
            )
        results.put(outcome)
    except BaseException as exc:
        results.put(exc)


def run_load(
    kind: str, port: int, imeis: list[str], processes: int, on_start, **timing
) -> tuple[list[dict], float]:
    """The load processes; `on_start(start_at)` once every connection is up. Returns their
    outcomes and how long the connections took to set up."""
    results = CTX.Queue()
    connected = CTX.Value("i", 0)
    go_at = CTX.Value("d", 0.0)
    workers = [
        CTX.Process(
            daemon=True,
            target=load_main,
            args=(kind, port, imeis[i::processes], timing, connected, go_at, results),
        )
        for i in range(processes)
    ]
    began = time.time()
    for worker in workers:
        worker.start()
    while connected.value < len(imeis):
        if time.time() - began > CONNECT_TIMEOUT_S + 30 or not results.empty():
            break  # a load process failed: its exception is in the results
        time.sleep(0.1)
    setup_s = time.time() - began
    start_at = time.time() + 2.0
    go_at.value = start_at
    on_start(start_at)
    wait_s = start_at + timing["window_s"] - time.time() + 240
    outcomes = [results.get(timeout=wait_s) for _ in workers]
    for worker in workers:
        worker.join(30)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise RuntimeError(f"a load process failed: {failures[0]!r}")
    return outcomes, setup_s


# ------------------------------------------------------------------------- phases


async def committed_rate(
    ctx: dict, org_id: str, window_start: float, window_end: float
) -> tuple[float, dict[str, float]]:
    """Records committed per second in the window, and the CPU each cost the location
    service, PostgreSQL, Redis and the broker (µs; what bounds the rate on shared cores)."""
    await asyncio.sleep(max(0.0, window_start - time.time()))
    before = await stored_count(ctx["dsn"], org_id)
    cpu_before = ctx["cpu"].sample()
    measured_from = time.time()
    await asyncio.sleep(max(0.0, window_end - time.time()))
    cpu_after = ctx["cpu"].sample()
    after = await stored_count(ctx["dsn"], org_id)
    return (after - before) / (time.time() - measured_from), cpu_per_item_us(
        cpu_before, cpu_after, after - before
    )


async def mqtt_phase(ctx: dict, seconds: float) -> tuple[float, dict[str, float]]:
    started = time.time() + 1.5
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            run_publishers(
                ctx["mqtt_port"],
                ctx["mqtt_devices"],
                2,
                "telemetry",
                4000,
                seconds,
                per_message=RECORDS_PER_PACKET,
            )
        except BaseException as exc:
            failures.append(exc)

    publisher = threading.Thread(target=publish)
    publisher.start()
    rate, cpu = await committed_rate(
        ctx, ctx["mqtt_org"], started + WARMUP_S, started + seconds - 0.5
    )
    await asyncio.to_thread(publisher.join)
    if failures:
        raise RuntimeError(f"the MQTT publishers failed: {failures[0]!r}")
    return rate, cpu


def _run_load_task(kind: str, ctx: dict, connections: int, **timing):
    """The load as a task, and a future resolving to its start once all are connected."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future = loop.create_future()
    load = asyncio.create_task(
        asyncio.to_thread(
            run_load,
            kind,
            ctx["teltonika_port"],
            ctx["imeis"][:connections],
            2,
            lambda start_at: loop.call_soon_threadsafe(started.set_result, start_at),
            **timing,
        )
    )
    return load, started


async def _start_of(load: asyncio.Task, started: asyncio.Future) -> float:
    await asyncio.wait({load, started}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        load.result()  # raises why the load failed before it started
    return started.result()


async def server_histogram(ctx: dict, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of one of the location's histograms."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{ctx['location_url']}/metrics")).raise_for_status().text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of what was observed between two
    scrapes (a histogram says no more than that)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] == 0:
        return float("nan")
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * counts[-1]:
            return bound
    return float("inf")


async def flood_phase(ctx: dict, connections: int, seconds: float) -> dict:
    load, started = _run_load_task("flood", ctx, connections, window_s=seconds)
    start_at = await _start_of(load, started)
    rate, cpu = await committed_rate(
        ctx, ctx["tracker_org"], start_at + WARMUP_S, start_at + seconds - 0.5
    )
    outcomes, setup_s = await load
    return {
        "rate": rate,
        "cpu": cpu,
        "packets": sum(o["acked"] for o in outcomes),
        "setup_s": setup_s,
    }


async def steady_phase(ctx: dict, connections: int, seconds: float, period_s: float) -> dict:
    load, started = _run_load_task("steady", ctx, connections, window_s=seconds, period_s=period_s)
    start_at = await _start_of(load, started)
    commit_before = await server_histogram(ctx, "telemetry_receive_to_commit_seconds")
    # Sampled through the window: the listener's resident memory with all connections held.
    rss_peak = 0.0
    while time.time() < start_at + seconds + 1:
        rss_peak = max(rss_peak, rss_mb(ctx["location_pid"]))
        await asyncio.sleep(1.0)
    commit_after = await server_histogram(ctx, "telemetry_receive_to_commit_seconds")
    outcomes, setup_s = await load
    latencies = [latency for o in outcomes for latency in o["latencies"]]
    send_lags = [lag for o in outcomes for lag in o["send_lags"]]
    return {
        "held": sum(o["held"] for o in outcomes),
        "setup_s": setup_s,
        "records": len(latencies),
        "rate": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "send_lag_p99_ms": percentile(send_lags, 0.99) * 1000,
        "commit_p99_ms": bucket_quantile(commit_before, commit_after, 0.99) * 1000,
        "rss_mb": rss_peak,
    }


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def main_async(args) -> None:
    fd_limit = raise_fd_limit()
    state = Path(tempfile.mkdtemp(prefix="fleet-bench-trackers-"))
    os.chmod(state, 0o755)  # noqa: S103 - postgres and mosquitto run as their own users
    stack = Stack.create(
        state, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    teltonika_port = free_port()
    os.environ.update(
        LOCATION_TRACKERS_HOST="127.0.0.1",
        LOCATION_TELTONIKA_PORT=str(teltonika_port),
        LOCATION_GT06_PORT=str(free_port()),
        # Both phases' connections (the limits' production values are lower).
        LOCATION_TRACKER_MAX_CONNECTIONS=str(max(args.held, args.connections) + 1000),
        LOCATION_TRACKER_MAX_CONNECTIONS_PER_SOURCE=str(max(args.held, args.connections) + 1000),
    )
    processes = []
    try:
        stack.start()
        setup, processes = start_services(stack, state)
        gateway = setup["urls"]["gateway"]
        location_pid = processes[2].pid
        print(f"stack up under {state}; fd limit {fd_limit}", flush=True)
        mqtt_org, _token, mqtt_devices = create_devices(gateway, args.mqtt_devices)
        tracker_org, _token, _none = create_devices(gateway, 0)
        imeis = await register_trackers(
            stack.postgres.url("vehicle_db", driver="postgresql"),
            tracker_org,
            max(args.connections, args.held),
        )
        ctx = {
            "dsn": stack.postgres.url("location_db", driver="postgresql"),
            "mqtt_port": stack.mosquitto.port,
            "mqtt_org": mqtt_org,
            "mqtt_devices": mqtt_devices,
            "tracker_org": tracker_org,
            "imeis": imeis,
            "teltonika_port": teltonika_port,
            "location_pid": location_pid,
            "location_url": setup["urls"]["location"],
            "cpu": CpuMeter(stack, location_pid),
        }
        rss_idle = rss_mb(location_pid)
        print(f"location pid {location_pid}, {rss_idle:.0f} MB resident idle", flush=True)
        # Its handshakes warm the device cache for the flood's connections (the same IMEIs).
        steady = await steady_phase(ctx, args.held, args.held_seconds, args.period)
        print(f"  held: {steady}", flush=True)
        flood = await flood_phase(ctx, args.connections, args.seconds)
        print(f"  Teltonika: {flood}", flush=True)
        # A warm-up (the device cache), then the measured window.
        await mqtt_phase(ctx, 6.0)
        mqtt_rate, mqtt_cpu = await mqtt_phase(ctx, args.seconds)
        print(f"  MQTT: {mqtt_rate:,.0f} records/s committed", flush=True)

        load = os.getloadavg()
        tcp_rate = flood["rate"]
        ratio = tcp_rate / mqtt_rate if mqtt_rate else float("nan")
        print(
            f"\n=== tracker benchmark ({os.cpu_count()} cores, everything on this machine; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==="
        )
        print(
            f"MQTT, 10 positions/message   {mqtt_rate:>9,.0f} records/s committed "
            f"({len(mqtt_devices)} devices, 2 publisher processes); CPU per record: "
            f"{format_cpu(mqtt_cpu)}"
        )
        print(
            f"Teltonika, 10 records/packet {tcp_rate:>9,.0f} records/s committed "
            f"({args.connections:,} connections, 2 load processes, connected in "
            f"{flood['setup_s']:.0f} s)   ratio {ratio:.2f} (goal >= 0.8: {goal(ratio >= 0.8)}); "
            f"CPU per record: {format_cpu(flood['cpu'])}"
        )
        print(
            f"{steady['held']:,} connections held (connected in {steady['setup_s']:.0f} s), one "
            f"record / {args.period:.0f} s each: {steady['rate']:,.0f} records/s; "
            f"due->acknowledged p50 {steady['p50_ms']:.0f} ms p99 {steady['p99_ms']:.0f} ms max "
            f"{steady['max_ms']:.0f} ms (goal p99 < 1000: {goal(steady['p99_ms'] < 1000)}); "
            f"server receive->commit p99 <= {steady['commit_p99_ms']:.0f} ms (per batch); "
            f"load generator send lag p99 {steady['send_lag_p99_ms']:.0f} ms; location process "
            f"{steady['rss_mb']:.0f} MB resident at most ({rss_idle:.0f} MB idle; "
            f"goal < 300: {goal(steady['rss_mb'] < 300)})"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()
        remove_tree(state)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, short windows")
    parser.add_argument("--connections", type=int, help="Teltonika connections (2,000)")
    parser.add_argument("--held", type=int, help="connections held in phase 3 (10,000)")
    parser.add_argument("--seconds", type=float, help="window of phases 1-2 (20)")
    parser.add_argument("--held-seconds", type=float, help="window of phase 3 (40)")
    parser.add_argument("--period", type=float, default=10.0, help="s between records (10)")
    parser.add_argument("--mqtt-devices", type=int, default=200)
    args = parser.parse_args()
    quick = args.quick or os.environ.get("QUICK") == "1"
    args.connections = args.connections or (300 if quick else 2000)
    args.held = args.held or (1000 if quick else 10_000)
    args.seconds = args.seconds or (15.0 if quick else 20.0)
    args.held_seconds = args.held_seconds or (20.0 if quick else 40.0)
    if quick:
        args.mqtt_devices = min(args.mqtt_devices, 50)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
