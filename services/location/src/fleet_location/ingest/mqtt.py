"""The MQTT consumer: paho-mqtt 2 in its own network thread, feeding the pipeline's inbox.

MQTT 5 with clean_start=False and a session expiry keeps this client's session (its
subscriptions and every unacknowledged message) on the broker across restarts; manual
acknowledgement lets the pipeline PUBACK only once a message's positions are committed.
The shared subscription lets any number of replicas split the stream.
"""

import threading
from collections.abc import Callable, Iterable

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


_PUBACK_HEADER = b"\x40\x02"

MessagesHandler = Callable[[list[InboundMessage]], None]


class BufferedClient(mqtt.Client):
    """paho's client, made cheap per message for a high-rate QoS 1 subscriber.

    - paho reads a packet with several tiny `recv` calls (the command byte, each length
      byte, then the rest) and handles one packet per `select`. Here each `recv` takes up to
      `READ_CHUNK` bytes into a buffer that paho's reads are served from, and `loop_read`
      goes on while whole packets are buffered (the socket would not wake `select` for them).
    - QoS 0 and 1 PUBLISH packets skip paho's message object, properties decoding, logging
      and callback matching: each becomes an `InboundMessage`, and the messages of one read
      are handed to `on_messages` together (one hand-off to the event loop, not one each).
    - `ack_many` queues the PUBACKs of a whole batch as one write (paho's `ack` queues one
      packet and wakes its thread once per message).
    """

    def __init__(self, *args, on_messages: MessagesHandler, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = bytearray()
        self._read_offset = 0
        self._buffered_sock: object | None = None
        self._on_messages = on_messages
        self._arrived: list[InboundMessage] = []

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
        try:
            rc = super().loop_read(max_packets)
            while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
                rc = super().loop_read(1)
        finally:
            self._flush_arrived()
        return rc

    def _flush_arrived(self) -> None:
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            self._on_messages(arrived)

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """A whole QoS 0/1 PUBLISH already buffered is taken in one step; else paho's way."""
        if self._in_packet["command"] == 0 and self._buffered():
            buffer, start = self._read_buffer, self._read_offset
            end = len(buffer)
            header = buffer[start]
            if header & 0xF0 == 0x30 and (header & 0x06) >> 1 < 2:
                length, shift, i = 0, 0, start + 1
                while i < end and i - start <= 4:
                    byte = buffer[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        if end - i >= length:
                            try:
                                message = self._decode_publish(
                                    (header & 0x06) >> 1, buffer[i : i + length]
                                )
                            except (IndexError, ValueError):
                                break  # malformed: paho reads and reports it
                            self._read_offset = i + length
                            self._arrived.append(message)
                            now = mqtt.time_func()
                            with self._msgtime_mutex:
                                self._last_msg_in = now
                                self._last_bytes_received = now
                            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
                        break
        return super()._packet_read()

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if qos == 2:
            self._flush_arrived()  # keep the order of everything handed over
            return super()._handle_publish()
        try:
            message = self._decode_publish(qos, self._in_packet["packet"])
        except (IndexError, ValueError):
            self._flush_arrived()
            return super()._handle_publish()  # malformed: paho reports it its own way
        self._arrived.append(message)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _decode_publish(self, qos: int, packet: bytes | bytearray) -> InboundMessage:
        length = (packet[0] << 8) | packet[1]
        raw_topic = bytes(packet[2 : 2 + length])
        offset = 2 + length
        mid = 0
        if qos:
            mid = (packet[offset] << 8) | packet[offset + 1]
            offset += 2
        if self._protocol == mqtt.MQTTv5:
            # Skip the properties: a variable byte integer length, then that many bytes.
            size, shift = 0, 0
            while True:
                byte = packet[offset]
                offset += 1
                size |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            offset += size
        if offset > len(packet) or not raw_topic:
            raise ValueError("malformed PUBLISH")
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = raw_topic.decode("utf-8", errors="replace")
        return InboundMessage(topic, bytes(packet[offset:]), mid, qos)

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK every message id, as one write; safe from any thread."""
        packet = b"".join(_PUBACK_HEADER + mid.to_bytes(2, "big") for mid in mids)
        if packet:
            self._packet_queue(mqtt.PUBACK, packet, 0, 0)


class MqttConsumer:
    def __init__(self, settings: Settings, inbox: Inbox) -> None:
        self._settings = settings
        self._inbox = inbox
        self._connected = threading.Event()
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            on_messages=inbox.put_many,
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
        client.on_message = self._on_message  # QoS 2 only (see BufferedClient)
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

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge a committed batch: QoS 1 PUBACKs in one write, QoS 2 one by one."""
        self._client.ack_many(mid for mid, qos in acks if qos == 1)
        for mid, qos in acks:
            if qos == 2:
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
