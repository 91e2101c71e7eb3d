"""The whole platform, five real service processes on the session's servers."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fleet_devstack.plugin import RunningService
from fleet_devstack.servers import PgBouncer, free_port
from fleet_devstack.stack import DATABASES, SERVICE_PORTS

BACKENDS = ["auth", "vehicle", "location", "notification"]


@dataclass
class Platform:
    services: dict[str, RunningService]
    redis_url: str
    mqtt_port: int
    env: dict[str, str]  # what the services were started with (to start another like them)

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url


@pytest.fixture(scope="session")
def pgbouncer(stack) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of the session's PostgreSQL."""
    # Beside the stack's PostgreSQL: a directory the postgres user can reach.
    port = free_port()
    bouncer = PgBouncer(stack.state_dir / f"pgbouncer-{port}", port, stack.postgres)
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def platform(stack, pgbouncer, migrated_database, run_service, tmp_path_factory) -> Platform:
    """The services reach their databases through PgBouncer, as Kubernetes runs them (the
    services' own tests reach PostgreSQL directly, as compose runs them)."""
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = stack.service_env(
        database_urls={
            name: pgbouncer.url(migrated_database(name).rsplit("/", 1)[1]) for name in DATABASES
        },
        service_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        keys_dir=tmp_path_factory.mktemp("keys"),
    )
    env.update(
        {
            "DATABASE_PGBOUNCER": "true",
            # A Redis database of its own: other tests' events must not reach this
            # notification service, nor its positions their listeners.
            "REDIS_URL": stack.redis.url.rsplit("/", 1)[0] + "/9",
            # Its own dynsec group, so its vehicle service leaves other tests' devices alone.
            "VEHICLE_DEVICE_GROUP": f"fleet-devices-platform-{uuid.uuid4().hex[:8]}",
            "LOCATION_MQTT_CLIENT_ID": f"fleet-location-platform-{uuid.uuid4().hex[:8]}",
            "LOCATION_MQTT_SHARE_GROUP": f"platform{uuid.uuid4().hex[:8]}",
            # Short enough for the end-to-end test to see a device go offline.
            "LOCATION_OFFLINE_AFTER_S": "3",
            "LOCATION_OFFLINE_SWEEP_INTERVAL_S": "1",
            # The drive's fixes are 0.4 s apart: its overspeed lasts past this minimum.
            "LOCATION_OVERSPEED_MIN_DURATION_S": "0.3",
            "VEHICLE_COMMAND_SHARE_GROUP": f"platform{uuid.uuid4().hex[:8]}",
            "NOTIFICATION_DELIVERY_POLL_INTERVAL_S": "0.2",
            # The PgBouncer test's webhook receiver listens on the loopback interface.
            "NOTIFICATION_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
        }
    )
    # Backends first: the gateway's readiness reports its upstreams.
    services = {name: run_service(name, env, port=ports[name]) for name in [*BACKENDS, "gateway"]}
    return Platform(services, env["REDIS_URL"], stack.mosquitto.port, env)
