"""The event types on `fleet:events` (docs/events.md), and each one's default alert severity."""

from typing import Literal

EventType = Literal[
    "geofence_enter",
    "geofence_exit",
    "overspeed",
    "idle",
    "device_online",
    "device_offline",
    "low_battery",
    "ignition_on",
    "ignition_off",
    "trip_start",
    "trip_end",
    "alarm",
    "maintenance_due",
    "driver_changed",
    "command_result",
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
    "ignition_on": "info",
    "ignition_off": "info",
    "trip_start": "info",
    "trip_end": "info",
    "alarm": "critical",
    "maintenance_due": "warning",
    "driver_changed": "info",
    "command_result": "info",
}
