"""The MQTT consumer: paho-mqtt 2 in its own network thread, feeding the pipeline's inbox.

MQTT 5 with clean_start=False and a session expiry keeps this client's session (its
subscriptions and every unacknowledged message) on the broker across restarts; manual
acknowledgement lets the pipeline PUBACK only once a message's positions are committed.
The shared subscription lets any number of replicas split the stream.
"""

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet_common.logging import get_logger
from fleet_location.config import Settings
from fleet_location.ingest import metrics
from fleet_location.ingest.pipeline import InboundMessage, Inbox

log = get_logger(__name__)

TOPICS = ("fleet/+/telemetry", "fleet/+/status", "owntracks/+/+")
READ_CHUNK = 256 * 1024


class BufferedClient(mqtt.Client):
    """paho's client, reading the socket in large chunks and every whole packet per wake-up.

    paho reads a packet with several tiny `recv` calls (the command byte, each length byte,
    then the rest) and handles one packet per `select`, so at thousands of messages a second
    its network thread spends most of its time in system calls. Here each `recv` takes up to
    `READ_CHUNK` bytes into a buffer that paho's reads are served from, and `loop_read` goes
    on while whole packets are buffered (the socket would not wake `select` for them).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = bytearray()
        self._read_offset = 0
        self._buffered_sock: object | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._buffered_sock:  # a new connection: nothing carries over
            self._buffered_sock = self._sock
            self._read_buffer = bytearray()
            self._read_offset = 0
        available = len(self._read_buffer) - self._read_offset
        if available <= 0:
            chunk = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(chunk) <= bufsize:
                return chunk
            self._read_buffer = bytearray(chunk)
            self._read_offset = 0
            available = len(chunk)
        start = self._read_offset
        end = start + min(bufsize, available)
        self._read_offset = end
        return bytes(self._read_buffer[start:end])

    def _buffered(self) -> bool:
        return (
            self._sock is not None
            and self._sock is self._buffered_sock
            and self._read_offset < len(self._read_buffer)
        )

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
            rc = super().loop_read(1)
        return rc


class MqttConsumer:
    def __init__(self, settings: Settings, inbox: Inbox) -> None:
        self._settings = settings
        self._inbox = inbox
        self._connected = threading.Event()
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(
            settings.mqtt_username, settings.mqtt_password.get_secret_value() or None
        )
        client.reconnect_delay_set(min_delay=0.5, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._settings.mqtt_session_expiry_s
        properties.ReceiveMaximum = self._settings.mqtt_receive_maximum
        self._client.connect_async(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def check(self) -> None:
        """Readiness: the broker must be reachable."""
        if not self._connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")

    # ---------------------------------------------------------------- paho callbacks

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connection refused", reason=str(reason_code))
            return
        group = self._settings.mqtt_share_group
        client.subscribe([(f"$share/{group}/{topic}", SubscribeOptions(qos=1)) for topic in TOPICS])
        log.info("MQTT connected", session_present=flags.session_present)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT subscription refused", reasons=refused)
            return
        # Ready only once the broker has confirmed the subscriptions.
        self._connected.set()
        metrics.MQTT_CONNECTED.set(1)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        log.warning("MQTT disconnected", reason=str(reason_code))

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        # Nothing may escape this callback: an exception would stop paho's network loop.
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")
        self._inbox.put(InboundMessage(topic, message.payload, message.mid, message.qos))
