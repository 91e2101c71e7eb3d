"""The broker's own figures (Mosquitto's `$SYS` topics) as Prometheus gauges.

No maintained Mosquitto exporter installs from PyPI, Debian or npm, so the location service,
which already holds a broker account allowed to subscribe everywhere, reads `$SYS` with a
second, plain client (not the ingest one: its connection carries the telemetry) and exports
what it reads. Mosquitto republishes these every `sys_interval` seconds (10 by default).
Every location replica exports the same figures: aggregate them with `max`, not `sum`.
"""

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Gauge

from fleet_common.logging import get_logger
from fleet_location.config import Settings

log = get_logger(__name__)

# Totals since the broker started are gauges here (we copy the broker's number; a broker
# restart resets it, which `rate()` treats as a counter reset either way).
_FIGURES = {
    "$SYS/broker/clients/connected": ("clients_connected", "Clients connected to the broker."),
    "$SYS/broker/clients/disconnected": (
        "clients_disconnected",
        "Persistent-session clients not connected now.",
    ),
    "$SYS/broker/clients/maximum": ("clients_maximum", "Most clients connected at once."),
    "$SYS/broker/messages/received": (
        "messages_received",
        "Messages of every kind received since the broker started.",
    ),
    "$SYS/broker/messages/sent": (
        "messages_sent",
        "Messages of every kind sent since the broker started.",
    ),
    "$SYS/broker/publish/messages/dropped": (
        "publish_messages_dropped",
        "PUBLISH messages dropped (queues full, client gone) since the broker started.",
    ),
    "$SYS/broker/store/messages/count": (
        "store_messages",
        "Messages held in the broker's store (queued or retained).",
    ),
    "$SYS/broker/store/messages/bytes": (
        "store_messages_bytes",
        "Payload bytes held in the broker's store.",
    ),
    "$SYS/broker/subscriptions/count": ("subscriptions", "Subscriptions on the broker."),
}
GAUGES = {
    topic: Gauge(f"mosquitto_{name}", help_text, multiprocess_mode="max")
    for topic, (name, help_text) in _FIGURES.items()
}
STATS_CONNECTED = Gauge(
    "mosquitto_sys_reader_connected",
    "1 while the location service reads the broker's $SYS figures.",
    multiprocess_mode="max",
)


class BrokerStats:
    """A background paho client (its own thread) that keeps the gauges current."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{settings.mqtt_client_id}-sys",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.username_pw_set(
            settings.mqtt_username, settings.mqtt_password.get_secret_value()
        )
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        STATS_CONNECTED.set(0)

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("broker $SYS reader refused", reason=str(reason_code))
            return
        STATS_CONNECTED.set(1)
        client.subscribe([(topic, 0) for topic in GAUGES])

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        STATS_CONNECTED.set(0)

    def _on_message(self, _client, _userdata, message) -> None:
        gauge = GAUGES.get(message.topic)
        if gauge is None:
            return
        try:
            gauge.set(float(message.payload))
        except ValueError:
            log.warning("unreadable $SYS figure", topic=message.topic)
