"""Gateway settings, read from the environment with the `GATEWAY_` prefix."""

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class RateLimit(BaseModel):
    requests: int = Field(ge=1)
    window_s: int = Field(ge=1, le=86400)


# Per user (per address when anonymous) and route group. OsmAnd ingest's limit is a flood
# backstop per address, above the location service's own per-address and per-device limits
# (which count their refusals as rejections and know which device proved its key).
DEFAULT_RATE_LIMITS = {
    "auth": RateLimit(requests=30, window_s=60),
    "ingest": RateLimit(requests=6000, window_s=60),
    "api": RateLimit(requests=1200, window_s=60),
}


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    auth_url: str = "http://127.0.0.1:8001"
    vehicle_url: str = "http://127.0.0.1:8002"
    location_url: str = "http://127.0.0.1:8003"
    notification_url: str = "http://127.0.0.1:8004"

    upstream_timeout_s: float = Field(30.0, gt=0)
    upstream_connect_timeout_s: float = Field(3.0, gt=0)
    upstream_max_connections: int = Field(200, ge=1)
    max_body_bytes: int = Field(1024 * 1024, ge=1)

    # JSON, e.g. {"api": {"requests": 600, "window_s": 60}}; groups not given keep defaults.
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    cors_origins: list[str] = []
    # Load balancers in front of the gateway whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = []

    ws_ping_interval_s: float = Field(20.0, gt=0)
    # Missed pongs after which a socket is considered dead: closed after this many intervals.
    ws_missed_pings: int = Field(3, ge=1)
    ws_queue_size: int = Field(256, ge=1)
    # Batched sockets (`?batch=1`): positions gathered this long, or this many, per message.
    ws_batch_window_s: float = Field(0.2, gt=0, le=5)
    ws_batch_max_positions: int = Field(1000, ge=1)

    # The built dashboard, served at `/` (relative to the working directory: the repository
    # under `make run`). Docker and Kubernetes serve it from its own nginx image instead.
    dashboard_dir: Path = Path("frontend/dist")
    # Upstream OpenAPI documents are fetched again after this long (`/api/v1/openapi.json`).
    openapi_cache_s: float = Field(60.0, ge=0)
    # How long a socket opened without a token may take to send it as its first message.
    ws_auth_timeout_s: float = Field(10.0, gt=0)

    def upstream_urls(self) -> dict[str, str]:
        return {
            "auth": self.auth_url,
            "vehicle": self.vehicle_url,
            "location": self.location_url,
            "notification": self.notification_url,
        }

    def rate_limit(self, group: str) -> RateLimit:
        return self.rate_limits.get(group) or DEFAULT_RATE_LIMITS.get(
            group, DEFAULT_RATE_LIMITS["api"]
        )
