"""`make bench-gateway`: what the gateway costs on an authenticated GET.

Starts PostgreSQL and Redis (fleet_devstack, in a temporary folder), the auth service and
the gateway as real uvicorn processes (as `fleet-dev run` starts them), registers an org,
then measures `GET /api/v1/auth/me` with the same token sent directly to auth and through
the gateway: first one request at a time (latency), then with concurrent clients
(throughput). Goal: the gateway adds at most 2 ms at p50 and keeps at least half the direct
throughput.

The revocation check's cost is measured the same way in the same run: the gateway against a
second gateway process without it (`no_revocation_app.py`), each connection a user of its own
(`--users`), so the check's once-a-second Redis read per user is in the figures too. On a
busy machine those differences drown in the noise, so the check is also timed in process
(`RevocationList.is_revoked` against the run's Redis, as the gateway calls it): its cost
per request and that of the Redis read behind a cache miss.

The machine is usually shared, so one measurement is not trusted: after a warm-up, each
mode runs several rounds, direct and gateway back to back in alternating order, and the
figures reported are medians over rounds; the added latency and the throughput ratio are
computed per round (from the two neighbouring measurements) and then their median taken.
The load average is printed at the start and the end, with the gateway's CPU time per
request (from /proc, steadier than latency on a busy machine).

The load generator is a small HTTP/1.1 keep-alive client on uvloop and httptools (not
httpx, whose own per-request cost on 2 cores was larger than the gateway's and made the
throughput ratio a measure of the client). Its ceiling against a trivial ASGI app, served
by the same uvicorn set-up, is measured and printed in every run.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httptools
import httpx
import uvloop

from fleet_common.auth import Principal, RevocationList, Role
from fleet_common.redis import create_redis
from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live

GOAL_ADDED_P50_MS = 2.0
GOAL_THROUGHPUT_RATIO = 0.5
BENCH_DIR = Path(__file__).resolve().parent


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(  # noqa: S603 - our own service command
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_live(port, process=process)
    return process


def bench_app_command(port: int, app: str) -> list[str]:
    """An app of this folder under uvicorn with the services' options (their command)."""
    command = service_command("gateway", port)
    app_at = command.index("fleet_gateway.main:create_app")
    command[app_at : app_at + 1] = [app, "--app-dir", str(BENCH_DIR)]
    if not app.endswith(":create_app"):
        command.remove("--factory")
    return command


def server_stack(pid: int) -> str:
    """Which event loop and HTTP parser a uvicorn process really loaded (Linux /proc)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown (no /proc)"
    loop = "uvloop" if "/uvloop/" in maps else "asyncio"
    parser = "httptools" if "/httptools/" in maps else "h11"
    return f"{loop} + {parser}"


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending one pre-encoded request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    requests: int
    cpu_ms_per_request: float | None = None


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_load(
    url: str,
    headers: dict[str, str] | list[dict[str, str]],
    *,
    concurrency: int,
    duration_s: float,
    server_pid: int | None = None,
) -> Run:
    """Closed-loop load for `duration_s`: every response must be a 200. With a list of
    headers, connection i sends the i-th (modulo): one user per connection."""
    target = httpx.URL(url)
    raws = [
        (
            f"GET {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.netloc.decode()}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in each.items())
            + "\r\n"
        ).encode()
        for each in (headers if isinstance(headers, list) else [headers])
    ]
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, target.host, target.port))[1]
        for _ in range(concurrency)
    ]
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s

    async def worker(connection: _Connection, raw: bytes) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await connection.request(raw)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")

    cpu_before = cpu_seconds(server_pid) if server_pid else None
    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c, raws[i % len(raws)]) for i, c in enumerate(connections)))
    finally:
        for connection in connections:
            connection.transport.close()
    elapsed = time.perf_counter() - began
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    cpu_ms = (
        (cpu_after - cpu_before) * 1000 / len(latencies)
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return Run(
        rps=len(latencies) / elapsed,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        requests=len(latencies),
        cpu_ms_per_request=cpu_ms,
    )


@dataclass
class Comparison:
    """Rounds of a baseline target (`direct`) and the measured one (`gateway`)."""

    direct: list[Run]
    gateway: list[Run]
    names: tuple[str, str] = ("direct", "gateway")

    def pairs(self) -> list[tuple[Run, Run]]:
        """(baseline, measured) of each round: measured back to back."""
        return list(zip(self.direct, self.gateway, strict=True))

    @property
    def added_p50(self) -> float:
        return statistics.median(g.p50 - d.p50 for d, g in self.pairs())

    @property
    def ratio(self) -> float:
        return statistics.median(g.rps / d.rps for d, g in self.pairs())


async def compare(
    targets: dict[str, str],
    headers: dict[str, str] | list[dict[str, str]],
    *,
    concurrency: int,
    rounds: int,
    duration_s: float,
    pids: dict[str, int],
) -> Comparison:
    """`targets`: the baseline first, then the measured one; `pids`: whose CPU to count."""
    baseline, measured = targets
    runs: dict[str, list[Run]] = {baseline: [], measured: []}
    for name in runs:  # warm-up: connections, caches, lazy imports
        await run_load(targets[name], headers, concurrency=concurrency, duration_s=1.0)
    for i in range(rounds):
        order = (baseline, measured) if i % 2 == 0 else (measured, baseline)
        for name in order:
            runs[name].append(
                await run_load(
                    targets[name],
                    headers,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    server_pid=pids.get(name),
                )
            )
    return Comparison(runs[baseline], runs[measured], (baseline, measured))


def _cpu(runs: list[Run]) -> str:
    cpu = [r.cpu_ms_per_request for r in runs if r.cpu_ms_per_request is not None]
    return f"{statistics.median(cpu):.3f}" if cpu else "-"


def report(title: str, comparison: Comparison, what: str = "gateway") -> None:
    """`what` is what the measured target adds to the baseline (the gateway, a check)."""
    baseline, measured = comparison.names
    print(f"\n{title}: median of {len(comparison.direct)} rounds")
    header = f"  {'target':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}"
    print(header + f"{'CPU ms/req':>12}")
    for name, runs in ((baseline, comparison.direct), (measured, comparison.gateway)):
        print(
            f"  {name:<16}{statistics.median(r.rps for r in runs):>10.0f}"
            f"{statistics.median(r.p50 for r in runs):>10.2f}"
            f"{statistics.median(r.p99 for r in runs):>10.2f}"
            f"{sum(r.requests for r in runs):>10}{_cpu(runs):>12}"
        )
    added = [f"{g.p50 - d.p50:.2f}" for d, g in comparison.pairs()]
    print(f"  added p50 per round (ms): {' '.join(added)}")
    print(
        f"  {what} adds {comparison.added_p50:.2f} ms at p50; keeps "
        f"{comparison.ratio:.0%} of {baseline} throughput"
    )


async def time_revocation_check(redis_url: str, users: int, checks: int = 200_000) -> None:
    """µs per `is_revoked` as requests of `users` users call it for a few seconds (the
    one-second cache re-read as it expires), and µs per read of a user's revocations."""
    redis = create_redis(redis_url)
    try:
        revocations = RevocationList(redis)
        now_s = int(time.time())
        principals = [
            Principal(uuid.uuid4(), uuid.uuid4(), Role.dispatcher, uuid.uuid4().hex, now_s + 900)
            for _ in range(users)
        ]
        for principal in principals:
            await revocations.is_revoked(principal)
        started = time.perf_counter()
        for i in range(checks):
            await revocations.is_revoked(principals[i % users])
        per_check_us = (time.perf_counter() - started) * 1e6 / checks
        reads = 2000
        started = time.perf_counter()
        for i in range(reads):
            revocations.forget(principals[i % users].user_id)
            await revocations.is_revoked(principals[i % users])
        per_read_us = (time.perf_counter() - started) * 1e6 / reads
    finally:
        await redis.aclose()
    print(
        f"\nrevocation check in process: {per_check_us:.2f} µs per request ({users} users, "
        f"{checks} checks, cache re-read each second), {per_read_us:.0f} µs per Redis read "
        "(once a second per active user)"
    )


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    line = f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
    if one > (os.cpu_count() or 1) / 2:
        # Every hop (client, gateway, service, database) waits for a CPU: the added
        # latency then grows with the load of others, not only with the gateway's cost.
        line += " (busy: the latency goal is for an unloaded machine)"
    return line


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (median)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--users", type=int, default=0, help="users the connections sign in as (default: one each)"
    )
    args = parser.parse_args()
    users = args.users or args.concurrency

    base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
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
        auth_port, gateway_port, trivial_port = free_port(), free_port(), free_port()
        unchecked_port = free_port()
        auth_url = f"http://127.0.0.1:{auth_port}"
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        env = {
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "INFO",
            "REDIS_URL": stack.redis.url,
            "AUTH_JWKS_URL": f"{auth_url}/.well-known/jwks.json",
            "AUTH_DATABASE_URL": stack.postgres.url("auth_db"),
            "AUTH_KEYS_DIR": str(base / "keys"),
            "GATEWAY_AUTH_URL": auth_url,
            # The limiter still runs and counts every request; it just never says no.
            "GATEWAY_RATE_LIMITS": '{"api": {"requests": 100000000, "window_s": 60}}',
        }
        migrate("auth", env)
        processes.append(start(service_command("auth", auth_port), auth_port, env))
        gateway = start(service_command("gateway", gateway_port), gateway_port, env)
        processes.append(gateway)
        unchecked = start(
            bench_app_command(unchecked_port, "no_revocation_app:create_app"), unchecked_port, env
        )
        processes.append(unchecked)
        trivial = start(bench_app_command(trivial_port, "trivial_app:app"), trivial_port, {})
        processes.append(trivial)

        async with httpx.AsyncClient(timeout=30) as client:
            all_headers = []
            for _ in range(users):
                response = await client.post(
                    f"{auth_url}/api/v1/auth/register",
                    json={
                        "org_name": "Bench",
                        "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                        "password": "Bench-Passw0rd-2026",
                        "full_name": "Bench Mark",
                    },
                )
                token = response.json()["access_token"]
                all_headers.append({"Authorization": f"Bearer {token}"})
        headers = all_headers[0]
        targets = {
            "direct": f"{auth_url}/api/v1/auth/me",
            "gateway": f"{gateway_url}/api/v1/auth/me",
        }
        print(
            f"GET /api/v1/auth/me, authenticated; {args.rounds} rounds of "
            f"{args.duration:g} s per target and mode"
        )
        print(f"start: {load_line()}")
        print(f"servers run on {server_stack(gateway.pid)}")

        ceiling = {}
        trivial_url = f"http://127.0.0.1:{trivial_port}/"
        for concurrency in (1, args.concurrency):
            await run_load(trivial_url, headers, concurrency=concurrency, duration_s=1.0)
            ceiling[concurrency] = await run_load(
                trivial_url,
                headers,
                concurrency=concurrency,
                duration_s=args.duration,
            )
        print(
            "client ceiling against a trivial ASGI app: "
            f"{ceiling[1].rps:.0f} req/s one at a time (p50 {ceiling[1].p50:.2f} ms), "
            f"{ceiling[args.concurrency].rps:.0f} req/s with {args.concurrency} clients"
        )

        sequential = await compare(
            targets,
            headers,
            concurrency=1,
            rounds=args.rounds,
            duration_s=args.duration,
            pids={"gateway": gateway.pid},
        )
        report("one request at a time (latency)", sequential)
        loaded = await compare(
            targets,
            all_headers,
            concurrency=args.concurrency,
            rounds=args.rounds,
            duration_s=args.duration,
            pids={"gateway": gateway.pid},
        )
        report(f"{args.concurrency} concurrent clients (throughput)", loaded)

        revocation_targets = {
            "no revocation": f"http://127.0.0.1:{unchecked_port}/api/v1/auth/me",
            "gateway": targets["gateway"],
        }
        pids = {"no revocation": unchecked.pid, "gateway": gateway.pid}
        for title, concurrency in (("one request at a time", 1), ("concurrent", args.concurrency)):
            checked = await compare(
                revocation_targets,
                all_headers,
                concurrency=concurrency,
                rounds=args.rounds,
                duration_s=args.duration,
                pids=pids,
            )
            report(
                f"revocation check, {title} ({concurrency} of {users} users)",
                checked,
                "the revocation check",
            )

        added_p50, ratio = sequential.added_p50, loaded.ratio
        latency_ok = added_p50 <= GOAL_ADDED_P50_MS
        throughput_ok = ratio >= GOAL_THROUGHPUT_RATIO
        await time_revocation_check(stack.redis.url, users)
        print(f"\nend: {load_line()}")
        print(
            f"goal: adds <= {GOAL_ADDED_P50_MS:.0f} ms at p50 (unloaded): "
            f"{'met' if latency_ok else 'NOT met'} ({added_p50:.2f} ms); "
            f">= {GOAL_THROUGHPUT_RATIO:.0%} of direct throughput: "
            f"{'met' if throughput_ok else 'NOT met'} ({ratio:.0%})"
        )
        return 0 if latency_ok and throughput_ok else 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()
        remove_tree(base)


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
