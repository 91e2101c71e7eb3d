"""Prometheus metrics of the ingest pipeline."""

from prometheus_client import Counter, Gauge, Histogram

REJECTED = Counter("telemetry_rejected_total", "Telemetry refused, by reason.", ["reason"])
IGNORED = Counter(
    "telemetry_ignored_total",
    "Messages that are valid but carry no position (e.g. OwnTracks transitions).",
    ["kind"],
)
RECEIVED = Counter(
    "telemetry_positions_received_total", "Valid positions handed to the writer.", ["source"]
)
STORED = Counter("telemetry_positions_stored_total", "Positions newly stored.")
DUPLICATES = Counter(
    "telemetry_duplicates_total", "Positions already stored (redeliveries, replays)."
)
BATCH_SECONDS = Histogram(
    "telemetry_batch_commit_seconds",
    "Time to write and commit one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "telemetry_batch_positions",
    "Positions per committed batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
PENDING = Gauge("telemetry_pending_positions", "Positions received but not yet committed.")
DB_ERRORS = Counter("telemetry_write_errors_total", "Failed batch writes (retried).")
REDIS_ERRORS = Counter(
    "telemetry_redis_errors_total", "Failed latest/geo/live updates after a commit."
)
OBSERVER_ERRORS = Counter(
    "telemetry_observer_errors_total", "Position observers that raised.", ["observer"]
)
DEVICE_LOOKUP_ERRORS = Counter(
    "telemetry_device_lookup_errors_total", "Vehicle service lookups that failed."
)
MQTT_CONNECTED = Gauge("telemetry_mqtt_connected", "1 while the MQTT consumer is connected.")
MQTT_READING_PAUSED = Gauge(
    "telemetry_mqtt_reading_paused",
    "1 while the consumer does not read from the broker (the pipeline is saturated).",
)
# Per batch, not per position: the oldest message of the batch waited longest, so this is
# the batch's worst case, at the cost of one observation per commit.
RECEIVE_TO_COMMIT_SECONDS = Histogram(
    "telemetry_receive_to_commit_seconds",
    "From the first message of a batch reaching the pipeline to the batch's commit.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PARTITIONS_COVER_UNTIL = Gauge(
    "telemetry_partitions_cover_until_timestamp_seconds",
    "End (Unix time) of the newest telemetry partition: how far ahead positions can go.",
    multiprocess_mode="max",
)
DEVICES_SEEN = Gauge(
    "telemetry_devices_seen",
    "Devices whose newest position is younger than LOCATION_OFFLINE_AFTER_S (offline sweep).",
    multiprocess_mode="max",
)
VEHICLES = Gauge(
    "fleet_vehicles",
    "Devices by the status GET /positions/latest gives them: moving, stopped, offline (offline "
    "sweep, every org).",
    ["status"],
    multiprocess_mode="max",
)
