"""location service settings, read from the environment with the `LOCATION_` prefix."""

import re
import socket

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from fleet_common.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LOCATION_")

    database_url: str = "postgresql+asyncpg://fleet@127.0.0.1:5432/location_db"

    # The vehicle service, for device -> vehicle/org mapping.
    vehicle_url: str = "http://127.0.0.1:8002"
    device_cache_ttl_s: float = 600.0
    device_negative_ttl_s: float = 30.0

    # MQTT ingest.
    mqtt_enabled: bool = True
    mqtt_host: str = Field("127.0.0.1", validation_alias="MQTT_HOST")
    mqtt_port: int = Field(1883, validation_alias="MQTT_PORT")
    mqtt_username: str = "fleet-location"
    mqtt_password: SecretStr = SecretStr("")
    # Stable per replica: the broker keeps this client's session (and its unacknowledged
    # messages) across restarts under this id. Under gunicorn it becomes `<id>-<worker slot>`
    # (see worker_slot).
    mqtt_client_id: str = Field(default_factory=lambda: f"fleet-location-{socket.gethostname()}")
    mqtt_share_group: str = "location"
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # Messages in flight (delivered, not yet acknowledged): acks follow the commit, so this
    # divided by the delivery-to-ack time bounds the rate (the broker caps it as well, see
    # max_inflight_messages in infrastructure/mosquitto/mosquitto.conf).
    mqtt_receive_maximum: int = Field(20_000, ge=1, le=65_535)
    # Set for each gunicorn worker by infrastructure/docker/gunicorn.conf.py (0, 1, ...; a
    # replacement worker gets the slot of the one it replaces). Each worker needs a broker
    # session of its own: two connections under one client id take the session over from each
    # other for as long as both run.
    worker_slot: int | None = Field(None, ge=0, validation_alias="FLEET_WORKER_SLOT")
    # On SIGTERM, leave the share group for good (unsubscribe, take in and acknowledge what
    # the session holds, end the session: its share goes to the other replicas at once), or
    # keep the session (it goes on receiving its share, which waits for the replica's return).
    # Unset: every session leaves except the group's anchor, the one whose client id ends in
    # ordinal 0 or in none (StatefulSet pod `location-0`, or the only replica), worker slot 0:
    # it keeps the stream while no replica runs. See docs/ingest-durability.md.
    mqtt_leave_on_stop: bool | None = None
    # Leaving: how long to take in what the session holds (within gunicorn's graceful_timeout
    # and the pod's termination grace), and the silence that says it holds nothing more.
    mqtt_drain_timeout_s: float = Field(10.0, gt=0)
    mqtt_drain_quiet_s: float = Field(1.0, gt=0)

    # Batch writer.
    batch_max_positions: int = 2000
    batch_max_delay_ms: float = 50.0
    max_pending_positions: int = 100_000
    http_commit_timeout_s: float = 10.0

    # HTTP (OsmAnd) ingest limits, requests per window: per source address (every request)
    # and per device (requests that carried the device's key). Traccar Client and OsmAnd
    # send one position a request, at most about one a second.
    http_ingest_per_address: int = Field(1200, ge=1)
    http_ingest_per_device: int = Field(120, ge=1)
    http_ingest_window_s: int = Field(60, ge=1, le=3600)
    # The gateway, whose X-Forwarded-For names the device's address.
    trusted_proxies: list[str] = ["127.0.0.1/32", "::1/128"]

    # Validation.
    max_payload_bytes: int = 256 * 1024
    max_positions_per_message: int = 1000
    max_future_s: float = 300.0
    max_age_days: int = 30

    # Storage.
    partition_ahead_days: int = 7
    retention_days: int = 365
    partition_check_interval_s: float = 3600.0
    dead_letter_max_rows: int = 10_000
    dead_letter_trim_interval_s: float = 30.0

    # Vehicle status and trips.
    moving_speed_kph: float = 5.0
    # Silence after which a device is offline: its status, and a `device_offline` event.
    offline_after_s: float = Field(600.0, gt=0)
    stop_speed_kph: float = 3.0
    min_stop_duration_s: float = 180.0
    max_history_days: int = 31
    # Reports from rollups: the longest range, how often stale buckets are redone, and how
    # long rollups are kept (longer than raw telemetry, so a year's summary survives it).
    max_report_days: int = 366
    rollup_interval_s: float = 30.0
    rollup_retention_days: int = 1830

    # Event detection (fleet_location.events).
    events_stream_maxlen: int = Field(100_000, ge=1_000)
    overspeed_hysteresis_kph: float = Field(5.0, ge=0)
    # How long a vehicle must be over its limit before the overspeed is alerted (0: at once).
    overspeed_min_duration_s: float = Field(10.0, ge=0, le=3600)
    idle_after_s: float = Field(300.0, gt=0)
    idle_speed_kph: float = Field(3.0, ge=0)
    idle_radius_m: float = Field(50.0, gt=0)
    offline_sweep_interval_s: float = Field(30.0, gt=0)
    low_battery_pct: float = Field(20.0, ge=0, le=100)
    low_battery_hysteresis_pct: float = Field(5.0, ge=0)
    detection_state_ttl_s: int = Field(30 * 86_400, ge=3_600)
    geofence_index_max_age_s: float = Field(300.0, gt=0)

    # Hardware trackers over TCP (fleet_location.trackers, docs/trackers.md). Devices connect
    # from anywhere, so the listeners take every interface; port 0 takes a free port (tests).
    trackers_enabled: bool = True
    trackers_host: str = "0.0.0.0"  # noqa: S104
    teltonika_port: int = Field(5027, ge=0, le=65_535)
    gt06_port: int = Field(5023, ge=0, le=65_535)
    tracker_max_connections: int = Field(20_000, ge=1)
    # Per source address: fleets behind one carrier NAT share an address, so not too low.
    tracker_max_connections_per_source: int = Field(1_000, ge=1)
    # The largest packet taken (a Teltonika backlog of 255 Codec 8E records fits); larger
    # lengths close the connection. A connection buffers at most twice this.
    tracker_max_frame_bytes: int = Field(65_536, ge=1_024, le=16 * 1024 * 1024)
    # Bytes skipped looking for a frame start before the connection is closed.
    tracker_max_garbage_bytes: int = Field(4_096, ge=0)
    tracker_handshake_timeout_s: float = Field(30.0, gt=0)
    # A frame begun must be complete within this (slow-loris), a connection that sends
    # nothing for the idle time is closed (devices reconnect when they next report).
    tracker_frame_timeout_s: float = Field(30.0, gt=0)
    tracker_idle_timeout_s: float = Field(1_200.0, gt=0)
    # A packet whose records are not committed within this goes unanswered (the device sends
    # it again) and its connection is closed.
    tracker_commit_timeout_s: float = Field(60.0, gt=0)
    # Allocations between young-generation collections; 0 keeps Python's 700. See main.py.
    gc_gen0_threshold: int = Field(50_000, ge=0)

    @model_validator(mode="after")
    def _client_id_per_worker(self) -> "Settings":
        if self.mqtt_leave_on_stop is None:
            ordinal = re.search(r"-(\d+)$", self.mqtt_client_id)
            anchor = (ordinal is None or int(ordinal.group(1)) == 0) and not self.worker_slot
            self.mqtt_leave_on_stop = not anchor
        if self.worker_slot is not None:
            self.mqtt_client_id = f"{self.mqtt_client_id}-{self.worker_slot}"
        return self

    @model_validator(mode="after")
    def _age_within_retention(self) -> "Settings":
        if self.max_age_days > self.retention_days:
            raise ValueError("LOCATION_MAX_AGE_DAYS must not exceed LOCATION_RETENTION_DAYS")
        return self

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL in the form asyncpg's own connect() takes."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
