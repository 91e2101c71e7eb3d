"""The whole platform, five real service processes on the session's servers."""

import uuid
from dataclasses import dataclass

import pytest

from fleet_devstack.plugin import RunningService
from fleet_devstack.servers import free_port
from fleet_devstack.stack import DATABASES, SERVICE_PORTS

BACKENDS = ["auth", "vehicle", "location", "notification"]


@dataclass
class Platform:
    services: dict[str, RunningService]
    redis_url: str
    mqtt_port: int
    env: dict[str, str]  # the services' environment (database URLs, ...)

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url


@pytest.fixture(scope="session")
def platform(stack, migrated_database, run_service, tmp_path_factory) -> Platform:
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = stack.service_env(
        database_urls={name: migrated_database(name) for name in DATABASES},
        service_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        keys_dir=tmp_path_factory.mktemp("keys"),
    )
    env.update(
        {
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
            "NOTIFICATION_DELIVERY_POLL_INTERVAL_S": "0.2",
        }
    )
    # Backends first: the gateway's readiness reports its upstreams.
    services = {name: run_service(name, env, port=ports[name]) for name in [*BACKENDS, "gateway"]}
    return Platform(services, env["REDIS_URL"], stack.mosquitto.port, env)
