"""`fleet-dev`: run the whole stack locally without Docker (`make run`, `make stop`)."""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from fleet_devstack.servers import StackError, _pid_alive
from fleet_devstack.stack import (
    DATABASES,
    REPO_ROOT,
    Stack,
    local_service_ports,
    migrate,
    service_command,
    wait_until_live,
)

STATE_DIR = Path(os.environ.get("FLEET_STATE_DIR", REPO_ROOT / ".state"))
RUN_PIDFILE = STATE_DIR / "run.pid"
COLOURS = {
    "gateway": 36,
    "auth": 35,
    "vehicle": 33,
    "location": 32,
    "notification": 34,
    "simulator": 37,
}


def load_dotenv(path: Path) -> None:
    """Put `.env`'s values into the environment unless already set there."""
    if not path.exists():
        return
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def local_stack() -> Stack:
    return Stack.create(
        STATE_DIR,
        pg_port=int(os.environ.get("FLEET_DEV_POSTGRES_PORT", 55432)),
        redis_port=int(os.environ.get("FLEET_DEV_REDIS_PORT", 56379)),
        mqtt_port=int(os.environ.get("FLEET_DEV_MQTT_PORT", 51883)),
        durable=True,
    )


def _pipe_with_prefix(service: str, stream) -> None:
    prefix = (
        f"\033[{COLOURS[service]}m{service:>12} |\033[0m "
        if sys.stdout.isatty()
        else f"{service:>12} | "
    )
    for line in iter(stream.readline, b""):
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def run() -> int:
    if RUN_PIDFILE.exists() and _pid_alive(int(RUN_PIDFILE.read_text())):
        print(f"the stack already runs (pid {RUN_PIDFILE.read_text()}); `make stop` stops it")
        return 1
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    RUN_PIDFILE.write_text(str(os.getpid()))
    stack = local_stack()
    processes: dict[str, subprocess.Popen] = {}
    extra: list[subprocess.Popen] = []  # helpers whose exit does not stop the stack
    stopping = threading.Event()

    def shutdown(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        own = stack.own_servers()
        for name, server in (
            ("PostgreSQL", stack.postgres),
            ("Redis", stack.redis),
            ("Mosquitto", stack.mosquitto),
        ):
            mine = any(server is s for s in own)
            print(f"{'starting' if mine else 'using the'} {name}", end="")
            print(f" under {STATE_DIR}" if mine else " named in the environment")
        stack.start(own)
        if any(stack.postgres is s for s in own):
            stack.create_databases()
        env = stack.service_env()
        for service in DATABASES:
            print(f"migrating {service}")
            migrate(service, env)
        ports = local_service_ports()
        for service, port in ports.items():
            process = subprocess.Popen(
                service_command(service, port),
                cwd=REPO_ROOT,
                env={"LOG_FORMAT": "console", **os.environ, **env},  # readable lines
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
            processes[service] = process
            threading.Thread(
                target=_pipe_with_prefix, args=(service, process.stdout), daemon=True
            ).start()
        for service, port in ports.items():
            # Ready, not just live: the URLs are printed once the stack can serve.
            wait_until_live(port, timeout_s=90, process=processes[service], probe="readiness")
        print(banner(ports["gateway"], stack.mosquitto.host, stack.mosquitto.port), flush=True)
        simulator = _start_simulator(env)
        if simulator is not None:
            extra.append(simulator)
        while not stopping.wait(0.5):
            exited = [name for name, proc in processes.items() if proc.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} exited; stopping the stack", file=sys.stderr)
                return 1
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for process in [*extra, *processes.values()]:
            if process.poll() is None:
                process.terminate()
        for process in [*extra, *processes.values()]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()
        RUN_PIDFILE.unlink(missing_ok=True)
        print("stopped")


def banner(gateway_port: int, mqtt_host: str, mqtt_port: int) -> str:
    """What the stack serves, each entry listed only if it answers right now."""
    gateway = f"http://127.0.0.1:{gateway_port}"
    pages = [
        ("Dashboard", f"{gateway}/", "text/html"),
        ("API docs", f"{gateway}/api/v1/docs", "text/html"),
        ("OpenAPI", f"{gateway}/api/v1/openapi.json", "application/json"),
    ]
    lines = ["", "Fleet Tracker is up:"]
    for label, url, content_type in pages:
        if _answers(url, content_type):
            lines.append(f"  {label:<12} {url}")
    lines.append(f"  API          {gateway}/api/v1/...  (README: The API)")
    lines.append(
        f"  MQTT broker  {mqtt_host}:{mqtt_port}  (devices: per-device credentials from"
        " POST /api/v1/devices; README: Connecting a device)"
    )
    lines += ["Ctrl-C (or `make stop`) stops everything.", ""]
    return "\n".join(lines)


def _answers(url: str, content_type: str) -> bool:
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return response.headers.get("content-type", "").startswith(content_type)


def _start_simulator(env: dict[str, str]) -> subprocess.Popen | None:
    """`SIMULATE=N make run`: N demo vehicles created through the API and driven over MQTT."""
    count = os.environ.get("SIMULATE", "").strip()
    if not count.isdigit() or int(count) < 1:
        return None
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet_location.sim",
            "--vehicles",
            count,
            "--api",
            f"http://127.0.0.1:{local_service_ports()['gateway']}",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    threading.Thread(
        target=_pipe_with_prefix, args=("simulator", process.stdout), daemon=True
    ).start()
    return process


def stop() -> int:
    if RUN_PIDFILE.exists():
        pid = int(RUN_PIDFILE.read_text())
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            return 0
    local_stack().stop()
    RUN_PIDFILE.unlink(missing_ok=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="fleet-dev", description=__doc__)
    parser.add_argument("command", choices=["run", "stop", "env"])
    args = parser.parse_args()
    load_dotenv(REPO_ROOT / ".env")
    if args.command == "run":
        sys.exit(run())
    if args.command == "stop":
        sys.exit(stop())
    for key, value in sorted(local_stack().service_env().items()):
        print(f"{key}={value}")
