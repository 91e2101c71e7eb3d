"""The event types the location service publishes, and each one's default alert severity."""

from typing import Literal

EventType = Literal[
    "geofence_enter",
    "geofence_exit",
    "overspeed",
    "idle",
    "device_online",
    "device_offline",
    "low_battery",
]
Severity = Literal["info", "warning", "critical"]
Channel = Literal["in_app", "webhook", "email", "push"]

DEFAULT_SEVERITY: dict[str, str] = {
    "geofence_enter": "info",
    "geofence_exit": "info",
    "overspeed": "warning",
    "idle": "info",
    "device_online": "info",
    "device_offline": "warning",
    "low_battery": "warning",
}
