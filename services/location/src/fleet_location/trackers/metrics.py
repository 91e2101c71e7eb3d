"""Prometheus metrics of the tracker listeners (their rejections are `telemetry_rejected_total`)."""

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("tracker_connections", "Open tracker connections.", ["protocol"])
ACCEPTED = Counter(
    "tracker_connections_accepted_total", "Tracker connections accepted.", ["protocol"]
)
CLOSED = Counter(
    "tracker_connections_closed_total", "Tracker connections closed, by why.", ["reason"]
)
FRAMES = Counter("tracker_frames_total", "Whole frames read from trackers.", ["protocol"])
COMMANDS = Counter(
    "tracker_commands_total", "Downlink commands to trackers, by outcome.", ["protocol", "outcome"]
)
