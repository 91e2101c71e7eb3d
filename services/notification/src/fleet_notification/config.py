"""notification service settings, read from the environment with the `NOTIFICATION_` prefix."""

import ipaddress
import os
import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/notification_db"

    # The fleet:events consumer.
    consumer_name: str = Field(default_factory=_default_consumer_name)
    stream_batch_size: int = Field(100, ge=1, le=1000)
    stream_block_ms: int = Field(2000, ge=10, le=4000)  # under the Redis socket timeout
    claim_idle_s: float = Field(60.0, gt=0)
    claim_interval_s: float = Field(10.0, gt=0)
    # An entry whose processing failed this many times (its delivery count in the consumer
    # group) goes to the event_dead_letters table, bounded to dead_letter_max_rows.
    max_event_attempts: int = Field(5, ge=1, le=100)
    dead_letter_max_rows: int = Field(10_000, ge=10, le=10_000_000)

    # Deliveries.
    delivery_concurrency: int = Field(20, ge=1, le=500)
    delivery_poll_interval_s: float = Field(2.0, gt=0)
    delivery_lease_s: float = Field(120.0, gt=0)
    delivery_max_attempts: int = Field(6, ge=1, le=50)
    delivery_retry_base_s: float = Field(10.0, gt=0)
    delivery_retry_max_s: float = Field(3600.0, gt=0)

    webhook_timeout_s: float = Field(10.0, gt=0)
    # Comma-separated networks (CIDR) or host names a webhook may target although they are
    # private, loopback or link-local, e.g. "10.0.0.0/8,hooks.internal".
    webhook_allowlist: str = ""

    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "Fleet Tracker <alerts@localhost>"
    smtp_starttls: bool = True
    smtp_use_tls: bool = False
    smtp_timeout_s: float = Field(15.0, gt=0)

    # Firebase Cloud Messaging: a service-account JSON file, or Application Default
    # Credentials with the project id. `fcm_endpoint` replaces https://fcm.googleapis.com
    # (a regional proxy, or a stand-in in tests).
    firebase_credentials_file: str | None = None
    firebase_project_id: str | None = None
    fcm_endpoint: str | None = None

    dashboard_url: str | None = None

    def webhook_allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for item in self.webhook_allowlist.split(","):
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                continue
        return networks

    def webhook_allowed_hosts(self) -> set[str]:
        hosts = set()
        for item in self.webhook_allowlist.split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                hosts.add(item)
        return hosts
