"""The MQTT consumer: paho-mqtt 2 driven by the service's event loop, feeding the pipeline.

MQTT 5 with clean_start=False and a session expiry keeps this client's session (its
subscriptions and every unacknowledged message) on the broker across restarts; manual
acknowledgement lets the pipeline PUBACK only once a message's positions are committed.
The shared subscription lets any number of replicas split the stream.

Mosquitto 2.0 does not save shared subscriptions: after a broker restart a session is back
without them, and messages for the group are dropped until its client subscribes again. So
each session keeps a retained manifest of its shared subscriptions on
`fleet-internal/shared-subscriptions/<client id>`, from which
infrastructure/mosquitto/restore_shared_subscriptions.py puts them back into the broker's
persistence file before it starts (docs/ingest-durability.md).

A replica that leaves for good (`MqttConsumer.leave`) unsubscribes, so that the broker
routes its share to the others, takes in and acknowledges what its session still holds,
and ends its session; the group's anchor keeps its session instead, to hold the stream
while no replica runs (see Settings.mqtt_leave_on_stop).

The client's socket is read on the event loop itself (`EventLoopNetwork`), not in paho's
network thread: while the loop is busy parsing and writing, data piles up in the socket and
the next read takes all of it at once, and messages reach the inbox without a cross-thread
hand-off or any contention for the GIL.
"""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet_common.logging import get_logger
from fleet_common.tasks import stop_tasks
from fleet_location.config import Settings
from fleet_location.ingest import metrics
from fleet_location.ingest.pipeline import InboundMessage, Inbox

log = get_logger(__name__)

TOPICS = ("fleet/+/telemetry", "fleet/+/status", "owntracks/+/+")
# Retained, one per session: the shared subscriptions to restore after a broker restart.
MANIFEST_PREFIX = "fleet-internal/shared-subscriptions/"
READ_CHUNK = 256 * 1024


_PUBACK_HEADER = b"\x40\x02"

MessagesHandler = Callable[[list[InboundMessage]], None]
# paho's SocketLike (a socket, an SSL socket or its websocket wrapper), typing-only in paho.
SocketLike = Any


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

    It runs either in paho's own thread (`loop_start`) or on an asyncio event loop
    (`EventLoopNetwork`), which opens its socket in a worker thread (`open_socket`) and
    connects over it on the loop's thread (`connect_over`).
    """

    def __init__(self, *args, on_messages: MessagesHandler, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = bytearray()
        self._read_offset = 0
        self._buffered_sock: object | None = None
        self._on_messages = on_messages
        self._arrived: list[InboundMessage] = []
        self._opened_socket: SocketLike | None = None

    # ---------------------------------------------------------------- connecting

    def open_socket(self) -> SocketLike:
        """Resolve the broker's address and open the connection (TCP, and TLS if set).

        Blocking (DNS, the handshakes): call it in a worker thread. It reads the settings
        `connect_async` stored and changes no state, so it is safe alongside the loop.
        """
        return super()._create_socket()

    def connect_over(self, sock: SocketLike) -> mqtt.MQTTErrorCode:
        """`reconnect()` over a socket from `open_socket`: sends CONNECT; never blocks."""
        self._opened_socket = sock
        try:
            return self.reconnect()
        finally:
            if self._opened_socket is not None:  # reconnect failed before taking it
                self._opened_socket = None
                sock.close()

    def _create_socket(self) -> SocketLike:
        sock, self._opened_socket = self._opened_socket, None
        return sock if sock is not None else super()._create_socket()

    def next_reconnect_delay(self) -> float:
        """The wait before the next attempt, as paho's own loop computes it: from the
        minimum of `reconnect_delay_set`, doubled each attempt up to its maximum, back to the
        minimum once a CONNACK accepts the connection."""
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None:
                self._reconnect_delay = self._reconnect_min_delay
            else:
                self._reconnect_delay = min(self._reconnect_delay * 2, self._reconnect_max_delay)
            return self._reconnect_delay

    def note_bytes_waiting(self) -> None:
        """The broker has sent bytes we have not read yet (reading is paused): that counts
        as hearing from it, so the keepalive pings instead of dropping a live connection."""
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()

    def close_socket(self) -> None:
        """Drop the connection at once (no DISCONNECT); `on_disconnect` is not called."""
        self._sock_close()

    # ---------------------------------------------------------------- reading

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
        """PUBACK every message id, as one write.

        Safe from any thread under `loop_start`; under `EventLoopNetwork` call it on the
        loop's thread (from another thread it is still correct, only slower).
        """
        packet = b"".join(_PUBACK_HEADER + mid.to_bytes(2, "big") for mid in mids)
        if packet:
            self._packet_queue(mqtt.PUBACK, packet, 0, 0)


class EventLoopNetwork:
    """Runs a `BufferedClient`'s network I/O on an asyncio event loop, in place of
    `loop_start()`: paho's external-loop integration (its `on_socket_*` callbacks).

    - The socket's reader calls `loop_read`; a writer, registered only while paho has bytes
      queued, calls `loop_write`; a 1 s tick calls `loop_misc` (the keepalive).
    - Connecting (DNS, the TCP and TLS handshakes) can block, so `open_socket` runs in a
      worker thread; CONNECT is then sent over that socket on the loop's thread. Every other
      use of the client, and of its state, is on the loop's thread: no locks, no hand-off.
    - A lost connection, or one that could not be made, is tried again after paho's
      back-off (`reconnect_delay_set`), as paho's own thread does. The first attempt starts
      at once and `start()` returns without waiting for it.
    - `pause_reading()` stops reading the socket (its buffers fill, then the broker holds
      further messages), `resume_reading()` reads on. While paused and bytes are waiting,
      the keepalive counts them as heard from the broker.
    - `stop()` sends everything queued (the last PUBACKs), then DISCONNECT, and closes the
      connection gracefully (see `_linger`).
    """

    MISC_INTERVAL_S = 1.0

    def __init__(self, client: BufferedClient) -> None:
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._sock: SocketLike | None = None
        self._reading = False  # the reader is registered
        self._writing = False  # the writer is registered
        self._paused = False
        self._closed = asyncio.Event()
        self._closed.set()
        self._stopping = False
        self._lingering: socket.socket | None = None
        self._connector: asyncio.Task | None = None
        self._misc: asyncio.Task | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    @property
    def reading_paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        """Connect, and keep connected, in the background; call on the running loop after
        `connect_async` (which only records where and how to connect)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._connector = asyncio.create_task(self._keep_connected(), name="mqtt-connect")
        self._misc = asyncio.create_task(self._misc_loop(), name="mqtt-misc")

    async def stop(self, timeout_s: float = 5.0, properties: Properties | None = None) -> None:
        """Stop reading, send what is queued (acknowledgements) then DISCONNECT, close."""
        self._stopping = True
        await stop_tasks((self._connector, self._misc))
        self._connector = self._misc = None
        if self._sock is None:
            return
        self.pause_reading()
        client = self._client
        deadline = time.monotonic() + timeout_s
        try:
            # Everything queued before DISCONNECT goes out first (paho's queue keeps order;
            # this also leaves nothing queued behind when paho closes the socket).
            await self._flush(deadline)
            if self._sock is not None:
                client.disconnect(properties=properties)
                client.loop_write()  # DISCONNECT, then paho closes its socket
                await self._flush(deadline)
        finally:
            if self._sock is not None:
                log.warning("MQTT disconnect did not complete; closing the connection")
                client.close_socket()
            lingering, self._lingering = self._lingering, None
            if lingering is not None:
                await self._linger(lingering, deadline)

    async def _linger(self, sock: socket.socket, deadline: float) -> None:
        """Close the connection only once the broker has read all we sent.

        The broker goes on sending while we stop. A socket closed with unread data makes the
        kernel reset the connection, and the broker drops what it had not read yet: our last
        PUBACKs and the DISCONNECT (those messages would come back, stored already). So,
        over a duplicate of paho's socket: FIN after everything written, then read and drop
        what still comes until the broker, having read the DISCONNECT, closes its side.
        """
        loop = self._require_loop()
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.5)):
                while await loop.sock_recv(sock, 256 * 1024):
                    pass
        except (OSError, TimeoutError):
            pass
        finally:
            sock.close()

    async def _flush(self, deadline: float) -> None:
        client = self._client
        while self._sock is not None and client.want_write():
            client.loop_write()
            if self._sock is None or not client.want_write():
                return
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.01)  # the socket's send buffer is full: let the broker read

    def pause_reading(self) -> None:
        if self._paused:
            return
        self._paused = True
        metrics.MQTT_READING_PAUSED.set(1)
        if self._reading:
            self._reading = False
            self._require_loop().remove_reader(self._sock)

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        metrics.MQTT_READING_PAUSED.set(0)
        if self._sock is not None and not self._reading and not self._stopping:
            loop = self._require_loop()
            self._reading = True
            loop.add_reader(self._sock, self._on_readable)
            if self._client._buffered():  # read ahead before the pause
                loop.call_soon(self._on_readable)

    # ---------------------------------------------------------------- connection

    async def _keep_connected(self) -> None:
        client = self._client
        loop = self._require_loop()
        first = True
        while not self._stopping:
            if not first:
                await asyncio.sleep(client.next_reconnect_delay())
            first = False
            opening = loop.run_in_executor(None, client.open_socket)
            try:
                sock = await asyncio.shield(opening)
            except asyncio.CancelledError:
                opening.add_done_callback(_close_opened)
                raise
            except OSError as exc:
                log.warning("MQTT connection failed; retrying", error=str(exc))
                continue
            try:
                client.connect_over(sock)
            except Exception:
                log.exception("MQTT connect failed; retrying")
                client.close_socket()
                continue
            await self._closed.wait()

    async def _misc_loop(self) -> None:
        client = self._client
        while True:
            await asyncio.sleep(self.MISC_INTERVAL_S)
            sock = self._sock
            if sock is None:
                continue
            try:
                if self._paused and _bytes_waiting(sock):
                    client.note_bytes_waiting()
                client.loop_misc()
            except Exception:
                log.exception("MQTT keepalive check failed")

    # ---------------------------------------------------------------- paho's socket callbacks

    def _on_socket_open(self, _client, _userdata, sock: SocketLike) -> None:
        self._on_loop_thread()
        self._sock = sock
        self._closed.clear()
        if not self._paused:
            self._reading = True
            self._require_loop().add_reader(sock, self._on_readable)

    def _on_socket_close(self, _client, _userdata, sock: SocketLike) -> None:
        self._on_loop_thread()
        loop = self._require_loop()
        if self._reading:
            loop.remove_reader(sock)
        if self._writing:
            loop.remove_writer(sock)
        self._reading = self._writing = False
        self._sock = None
        self._closed.set()
        if self._stopping and type(sock) is socket.socket:  # not TLS: an SSLSocket cannot dup
            # Keep the connection open past paho's close, to end it gracefully (`_linger`).
            self._lingering = sock.dup()

    def _on_socket_register_write(self, _client, _userdata, _sock: SocketLike) -> None:
        if threading.get_ident() == self._loop_thread:
            self._watch_writes()
        else:  # an ack from another thread
            self._require_loop().call_soon_threadsafe(self._watch_writes)

    def _on_socket_unregister_write(self, _client, _userdata, _sock: SocketLike) -> None:
        if threading.get_ident() == self._loop_thread:
            self._unwatch_writes()
        else:
            self._require_loop().call_soon_threadsafe(self._unwatch_writes)

    def _watch_writes(self) -> None:
        if self._sock is not None and not self._writing and self._client.want_write():
            self._writing = True
            self._require_loop().add_writer(self._sock, self._on_writable)

    def _unwatch_writes(self) -> None:
        if self._writing and not self._client.want_write():
            self._writing = False
            self._require_loop().remove_writer(self._sock)

    def _on_readable(self) -> None:
        if self._sock is not None and not self._paused:
            self._client.loop_read()

    def _on_writable(self) -> None:
        self._client.loop_write()
        self._unwatch_writes()  # paho may not say so when it was asked from another thread

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "EventLoopNetwork.start() was not called"
        return self._loop

    def _on_loop_thread(self) -> None:
        assert threading.get_ident() == self._loop_thread, "socket opened or closed off the loop"


def _close_opened(opening: asyncio.Future) -> None:
    """A connection opened after we stopped waiting for it: close it."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _bytes_waiting(sock: SocketLike) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except (OSError, ValueError):  # nothing waiting, a broken connection, or TLS (no peek)
        return False


class MqttConsumer:
    """The service's MQTT subscriber, on the event loop (see `EventLoopNetwork`)."""

    def __init__(self, settings: Settings, inbox: Inbox) -> None:
        self._settings = settings
        self._inbox = inbox
        self._connected = threading.Event()
        self._filters = [f"$share/{settings.mqtt_share_group}/{topic}" for topic in TOPICS]
        self._manifest_topic = MANIFEST_PREFIX + settings.mqtt_client_id
        self._manifest_mid: int | None = None
        # Message ids delivered and not yet acknowledged: a session may end only when empty
        # (the broker discards what an ended session holds).
        self._unacked: set[int] = set()
        self._last_message_at = 0.0
        self._leaving = False
        self._unsubscribed = asyncio.Event()
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            on_messages=self._arrived,
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
        client.on_unsubscribe = self._on_unsubscribe
        client.on_publish = self._on_publish
        self._client = client
        self._network = EventLoopNetwork(client)

    def start(self) -> None:
        """Connect in the background (call on the running event loop); ready after SUBACK."""
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
        self._network.start()

    async def leave(self, timeout_s: float, quiet_s: float) -> bool:
        """Leave the share group for good; True once the session holds nothing more.

        Unsubscribes (the broker then routes this session's share to the other members),
        clears the retained manifest (a broker restart must not subscribe it again), and
        goes on taking in what the session still holds, until everything delivered is
        acknowledged and nothing has come for `quiet_s`. The pipeline must keep running
        meanwhile. False when that did not happen within `timeout_s` (the rest waits in the
        session, which must then be kept: see `stop`).
        """
        self._leaving = True  # a reconnect from now on does not subscribe again
        if not self._connected.is_set():
            return False
        client = self._client
        deadline = time.monotonic() + timeout_s
        self._unsubscribed.clear()
        client.unsubscribe(self._filters)
        try:
            async with asyncio.timeout(timeout_s):
                await self._unsubscribed.wait()
        except TimeoutError:
            log.warning("MQTT unsubscribe not confirmed; keeping the session")
            return False
        client.publish(self._manifest_topic, b"", qos=1, retain=True)
        log.info("MQTT left the shared subscription; taking in what the session holds")
        self._last_message_at = time.monotonic()
        while time.monotonic() < deadline:
            if self._network.reading_paused:  # what is unread may be in the socket
                self._last_message_at = time.monotonic()
            quiet = time.monotonic() - self._last_message_at >= quiet_s
            if quiet and not self._unacked and not client.want_write() and self.is_connected():
                return True
            await asyncio.sleep(0.05)
        log.warning(
            "MQTT session not drained in time; it keeps the rest",
            unacknowledged=len(self._unacked),
        )
        return False

    async def stop(self, *, end_session: bool = False) -> None:
        """Send the acknowledgements already queued, then disconnect: keeping the session
        (its subscriptions and messages wait on the broker), or ending it (`leave` first)."""
        properties = None
        if end_session:
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
        await self._network.stop(properties=properties)
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        if end_session:
            log.info("MQTT session ended", client_id=self._settings.mqtt_client_id)

    def pause_reading(self) -> None:
        """Read nothing more from the broker (the pipeline is saturated)."""
        self._network.pause_reading()

    def resume_reading(self) -> None:
        self._network.resume_reading()

    @property
    def reading_paused(self) -> bool:
        return self._network.reading_paused

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge a committed batch: QoS 1 PUBACKs in one write, QoS 2 one by one."""
        self._unacked.difference_update(mid for mid, _qos in acks)
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

    def _arrived(self, items: list[InboundMessage]) -> None:
        self._unacked.update(item.mid for item in items if item.qos)
        self._last_message_at = time.monotonic()
        self._inbox.put_many(items)

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connection refused", reason=str(reason_code))
            return
        if self._leaving:
            self._connected.set()  # only to take in what the session still holds
        else:
            client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self._filters])
        log.info(
            "MQTT connected",
            client_id=self._settings.mqtt_client_id,
            session_present=flags.session_present,
        )

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT subscription refused", reasons=refused)
            return
        # Ready only once the broker has confirmed the subscriptions.
        self._connected.set()
        metrics.MQTT_CONNECTED.set(1)
        manifest = json.dumps({"filters": self._filters, "qos": 1})
        self._manifest_mid = self._client.publish(
            self._manifest_topic, manifest, qos=1, retain=True
        ).mid

    def _on_unsubscribe(self, _client, _userdata, _mid, _reason_codes, _properties) -> None:
        self._unsubscribed.set()

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        if mid == self._manifest_mid and reason_code.is_failure:
            # The location role needs publishClientSend on fleet-internal/shared-subscriptions/#
            # (provision-clients.sh): without the manifest a broker restart drops positions.
            log.error(
                "MQTT broker refused the shared-subscription manifest; a broker restart "
                "will drop positions until this client subscribes again",
                reason=str(reason_code),
            )

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        log.warning(
            "MQTT disconnected", client_id=self._settings.mqtt_client_id, reason=str(reason_code)
        )

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        # Nothing may escape this callback: it would abandon the read in progress.
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")
        self._arrived([InboundMessage(topic, message.payload, message.mid, message.qos)])
