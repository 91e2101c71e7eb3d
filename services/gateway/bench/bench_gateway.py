"""`make bench-gateway`: what the gateway costs on an authenticated GET.

Starts PostgreSQL and Redis (fleet_devstack, in a temporary folder), the auth service and
the gateway as real uvicorn processes, registers an org, then measures
`GET /api/v1/auth/me` with the same token sent directly to auth and through the gateway,
in the same run: first one request at a time (latency), then with concurrent clients
(throughput). Goal: the gateway adds at most 2 ms at p50 and keeps at least half the
direct throughput.
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
from pathlib import Path

import httpx

from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live

GOAL_ADDED_P50_MS = 2.0
GOAL_THROUGHPUT_RATIO = 0.5


def start(service: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(  # noqa: S603 - our own service command
        service_command(service, port),
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_live(port, process=process)
    return process


async def run_load(
    url: str, headers: dict[str, str], *, concurrency: int, duration_s: float
) -> tuple[float, list[float]]:
    """Requests per second and every latency (ms), for `duration_s` of closed-loop load."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(targets: dict[str, str], headers, concurrency: int, duration_s: float):
    results = {}
    for name, url in targets.items():
        await run_load(url, headers, concurrency=concurrency, duration_s=1.0)  # warm-up
        results[name] = await run_load(url, headers, concurrency=concurrency, duration_s=duration_s)
    return results


def report(title: str, results) -> tuple[float, float]:
    print(f"\n{title}")
    print(f"  {'target':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}")
    for name, (rps, latencies) in results.items():
        print(
            f"  {name:<10}{rps:>10.0f}{percentile(latencies, 50):>10.2f}"
            f"{percentile(latencies, 99):>10.2f}{len(latencies):>10}"
        )
    direct_rps, direct_lat = results["direct"]
    gateway_rps, gateway_lat = results["gateway"]
    added_p50 = percentile(gateway_lat, 50) - percentile(direct_lat, 50)
    ratio = gateway_rps / direct_rps
    print(f"  gateway adds {added_p50:.2f} ms at p50; keeps {ratio:.0%} of direct throughput")
    return added_p50, ratio


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

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
        auth_port, gateway_port = free_port(), free_port()
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
            # The limiter still runs (one Redis round trip per request); it just never says no.
            "GATEWAY_RATE_LIMITS": '{"api": {"requests": 100000000, "window_s": 60}}',
        }
        migrate("auth", env)
        processes.append(start("auth", auth_port, env))
        processes.append(start("gateway", gateway_port, env))

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{auth_url}/api/v1/auth/register",
                json={
                    "org_name": "Bench",
                    "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "Bench-Passw0rd-2026",
                    "full_name": "Bench Mark",
                },
            )
        registered = response.json()
        headers = {"Authorization": f"Bearer {registered['access_token']}"}
        targets = {
            "direct": f"{auth_url}/api/v1/auth/me",
            "gateway": f"{gateway_url}/api/v1/auth/me",
        }
        print(f"GET /api/v1/auth/me, authenticated; {args.duration:.0f} s per measurement")
        sequential = await measure(targets, headers, 1, args.duration)
        added_p50, _ = report("one request at a time (latency)", sequential)
        loaded = await measure(targets, headers, args.concurrency, args.duration)
        _, ratio = report(f"{args.concurrency} concurrent clients (throughput)", loaded)

        latency_ok = added_p50 <= GOAL_ADDED_P50_MS
        throughput_ok = ratio >= GOAL_THROUGHPUT_RATIO
        print(
            f"\ngoal: adds <= {GOAL_ADDED_P50_MS:.0f} ms at p50 (unloaded): "
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
    sys.exit(asyncio.run(main()))
