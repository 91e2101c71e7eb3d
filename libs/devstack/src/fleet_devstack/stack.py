"""The whole local stack: servers, databases, migrations and the five services' environment."""

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from fleet_devstack.servers import Mosquitto, Postgres, Redis, Secrets, StackError, server_dir

REPO_ROOT = Path(__file__).resolve().parents[4]
SERVICE_PORTS = {
    "auth": 8001,
    "vehicle": 8002,
    "location": 8003,
    "notification": 8004,
    "gateway": 8000,
}
DATABASES = {
    "auth": "auth_db",
    "vehicle": "vehicle_db",
    "location": "location_db",
    "notification": "notification_db",
}
POSTGIS_SERVICES = {"location"}


def local_service_ports(env: dict[str, str] | None = None) -> dict[str, int]:
    """The contract's ports, each movable by `FLEET_DEV_<SERVICE>_PORT` (e.g. a second stack)."""
    env = os.environ if env is None else env
    return {
        name: int(env.get(f"FLEET_DEV_{name.upper()}_PORT") or port)
        for name, port in SERVICE_PORTS.items()
    }


SECRET_NAMES = ["postgres", "mqtt_admin", "mqtt_ingest", "internal_token"]


@dataclass
class Stack:
    state_dir: Path
    postgres: Postgres
    redis: Redis
    mosquitto: Mosquitto
    secrets: Secrets

    @classmethod
    def create(
        cls, state_dir: Path, *, pg_port: int, redis_port: int, mqtt_port: int, durable: bool
    ) -> "Stack":
        generated = Secrets.load(state_dir / "secrets.json", SECRET_NAMES)
        return cls(
            state_dir=state_dir,
            postgres=Postgres(
                server_dir(state_dir, "postgres", "postgres"),
                pg_port,
                generated["postgres"],
                durable=durable,
            ),
            redis=Redis(state_dir / "redis", redis_port, durable=durable),
            mosquitto=Mosquitto(
                server_dir(state_dir, "mosquitto", "mosquitto"),
                mqtt_port,
                generated["mqtt_admin"],
                generated["mqtt_ingest"],
            ),
            secrets=generated,
        )

    @classmethod
    def external(cls, env: dict[str, str]) -> "Stack":
        """Servers someone else runs, named by TEST_* variables (see .env.example)."""
        mqtt = urlsplit(env["TEST_MQTT_URL"])
        return cls(
            state_dir=Path("/nonexistent"),
            postgres=Postgres.external(env["TEST_POSTGRES_URL"]),
            redis=Redis(Path("/nonexistent"), 0, external_url=env["TEST_REDIS_URL"]),
            mosquitto=Mosquitto(
                Path("/nonexistent"),
                mqtt.port or 1883,
                admin_username=unquote(mqtt.username or ""),
                admin_password=unquote(mqtt.password or ""),
                ingest_username=env["TEST_MQTT_INGEST_USERNAME"],
                ingest_password=env["TEST_MQTT_INGEST_PASSWORD"],
                host=mqtt.hostname or "127.0.0.1",
            ),
            secrets=Secrets({name: secrets.token_urlsafe(24) for name in SECRET_NAMES}),
        )

    def own_servers(self, env: dict[str, str] | None = None) -> list:
        """The servers to run ourselves: those the environment does not name one for."""
        env = os.environ if env is None else env
        servers = []
        if not all(env.get(f"{service.upper()}_DATABASE_URL") for service in DATABASES):
            servers.append(self.postgres)
        if not env.get("REDIS_URL"):
            servers.append(self.redis)
        if not env.get("MQTT_HOST"):
            servers.append(self.mosquitto)
        return servers

    def start(self, servers: list | None = None) -> None:
        """Start `servers` (default: all three)."""
        for server in self.own_servers({}) if servers is None else servers:
            if server is self.postgres:
                self.postgres.init()
            server.start()

    def stop(self) -> None:
        for server in (self.mosquitto, self.redis, self.postgres):
            try:
                server.stop()
            except StackError as exc:
                print(f"warning: {exc}", file=sys.stderr)

    def create_databases(self) -> None:
        for service, database in DATABASES.items():
            self.postgres.create_database(database, postgis=service in POSTGIS_SERVICES)

    def service_env(
        self,
        *,
        database_urls: dict[str, str] | None = None,
        service_urls: dict[str, str] | None = None,
        keys_dir: Path | None = None,
    ) -> dict[str, str]:
        """Environment for the five services; values already in os.environ win.

        Tests pass their own databases and service URLs (free ports); `make run` uses the
        defaults: the four databases of DATABASES and the contract's ports.
        """
        urls = service_urls or {
            name: f"http://127.0.0.1:{port}" for name, port in local_service_ports().items()
        }
        env = {
            "ENVIRONMENT": "development",
            "REDIS_URL": self.redis.url,
            "AUTH_JWKS_URL": f"{urls['auth']}/.well-known/jwks.json",
            "INTERNAL_SERVICE_TOKEN": self.secrets["internal_token"],
            "MQTT_HOST": self.mosquitto.host,
            "MQTT_PORT": str(self.mosquitto.port),
            "VEHICLE_MQTT_ADMIN_USERNAME": self.mosquitto.admin_username,
            "VEHICLE_MQTT_ADMIN_PASSWORD": self.mosquitto.admin_password,
            "LOCATION_MQTT_USERNAME": self.mosquitto.ingest_username,
            "LOCATION_MQTT_PASSWORD": self.mosquitto.ingest_password,
            "LOCATION_VEHICLE_URL": urls["vehicle"],
            "AUTH_KEYS_DIR": str(keys_dir or self.state_dir / "keys"),
            "GATEWAY_AUTH_URL": urls["auth"],
            "GATEWAY_VEHICLE_URL": urls["vehicle"],
            "GATEWAY_LOCATION_URL": urls["location"],
            "GATEWAY_NOTIFICATION_URL": urls["notification"],
        }
        for service, database in DATABASES.items():
            url = (database_urls or {}).get(service) or self.postgres.url(database)
            env[f"{service.upper()}_DATABASE_URL"] = url
        if service_urls is not None:
            # Tests: the tracker listeners on free loopback ports, never the contract's.
            env.update(
                LOCATION_TRACKERS_HOST="127.0.0.1",
                LOCATION_TELTONIKA_PORT="0",
                LOCATION_GT06_PORT="0",
            )
            return env
        return {**env, **{k: v for k, v in os.environ.items() if k in env}}


def migrate(service: str, env: dict[str, str], *args: str) -> str:
    """`alembic upgrade head` (or the alembic command in `args`) for one service."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *(args or ("upgrade", "head"))],
        cwd=REPO_ROOT / "services" / service,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"migrations of {service} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def service_command(service: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"fleet_{service}.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]


def wait_until_live(
    port: int,
    timeout_s: float = 60.0,
    process: subprocess.Popen | None = None,
    probe: str = "liveness",
) -> None:
    """Wait for the service on `port` to answer 200 on /health/<probe>."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/health/{probe}"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"the service on port {port} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StackError(f"{url} did not answer within {timeout_s}s")
