"""The consumer's paho client: chunked reads, lean QoS 1 decoding, batched PUBACKs, and its
network loop run on the event loop (`EventLoopNetwork`, as the service runs it) or in paho's
own thread (`loop_start`).

Against the real broker: MQTT 5 messages with properties (which the lean decoder skips),
payloads larger than one socket read, order kept, and `ack_many` acknowledging exactly the
messages it names (the broker redelivers the rest to the same persistent session). On the
event loop: the acknowledgements queued just before a stop still count (even while the
broker is still sending), paused reading
leaves messages with the broker without losing the connection to the keepalive, the
connection is made late and made again after a broker restart, never blocking the loop, and
QoS 2 still goes through paho.
"""

import asyncio
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet_location.ingest.mqtt import READ_CHUNK, BufferedClient, EventLoopNetwork
from fleet_location.ingest.pipeline import InboundMessage

from .conftest import allow_publisher

TIMEOUT_S = 20.0
MODES = ("loop", "thread")


class Collector:
    def __init__(self, expected: int = 0) -> None:
        self.messages: list[InboundMessage] = []
        self.batches = 0
        self.enough = threading.Event()
        self.expected = expected

    def __call__(self, messages: list[InboundMessage]) -> None:
        self.batches += 1
        self.messages.extend(messages)
        if len(self.messages) >= self.expected:
            self.enough.set()


async def waited(event: threading.Event, timeout_s: float = TIMEOUT_S) -> bool:
    """Wait for a thread-safe event without blocking the event loop (which may be the one
    running the client)."""
    return await asyncio.to_thread(event.wait, timeout_s)


class Consumer:
    """A `BufferedClient` on a persistent session, subscribed to `topic`, its network loop
    on the event loop (`loop`) or in paho's thread (`thread`)."""

    def __init__(
        self,
        port: int,
        username: str,
        password: str,
        client_id: str,
        topic: str,
        collector: Collector,
        mode: str,
        *,
        keepalive: int = 60,
        qos: int = 1,
        receive_maximum: int | None = None,
    ) -> None:
        self.client = client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            on_messages=collector,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(username, password)
        client.reconnect_delay_set(0.5, 2)
        self.suback = threading.Event()
        self.disconnected = threading.Event()
        self.disconnects = 0
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=qos)
        client.on_subscribe = lambda *_: self.suback.set()
        client.on_disconnect = self._on_disconnect
        self.network = EventLoopNetwork(client) if mode == "loop" else None
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        client.connect_async(
            "127.0.0.1", port, keepalive=keepalive, clean_start=False, properties=properties
        )

    def _on_disconnect(self, *_args) -> None:
        self.disconnects += 1
        self.disconnected.set()

    @classmethod
    async def started(cls, *args, **kwargs) -> "Consumer":
        consumer = cls(*args, **kwargs)
        consumer.start()
        assert await waited(consumer.suback), "consumer could not subscribe"
        return consumer

    def start(self) -> None:
        if self.network is not None:
            self.network.start()
        else:
            self.client.loop_start()

    async def close(self, properties: Properties | None = None, *, barrier: bool = True) -> None:
        """Disconnect; with `barrier`, only once the broker has handled everything sent
        before (the PUBACKs): a SUBACK comes back only after the broker has read every
        earlier packet of this connection, so a subscription round trip is the barrier."""
        if barrier:
            self.suback.clear()
            self.client.subscribe(f"barrier/{uuid.uuid4().hex}", qos=1)
            assert await waited(self.suback), "no SUBACK"
        if self.network is not None:
            await self.network.stop(properties=properties)
            assert self.client.socket() is None
        else:
            self.disconnected.clear()
            self.client.disconnect(properties=properties)
            assert await waited(self.disconnected), "consumer did not disconnect"
            await asyncio.to_thread(self.client.loop_stop)


def publisher(port: int, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def publish_all(client: mqtt.Client, topic: str, payloads: list[bytes], qos=1) -> None:
    def run() -> None:
        for payload in payloads:
            client.publish(topic, payload, qos=qos).wait_for_publish(5)

    await asyncio.to_thread(run)


def stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def ended_session() -> Properties:
    properties = Properties(PacketTypes.DISCONNECT)
    properties.SessionExpiryInterval = 0
    return properties


@pytest.mark.parametrize("mode", MODES)
async def test_messages_arrive_whole_in_order_and_only_acked_ones_are_settled(
    stack, org_a, make_device, mode
) -> None:
    device = make_device(org_a)
    topic = f"fleet/{device.uid}/telemetry"
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.uid, protocol=mqtt.MQTTv5)
    sender.username_pw_set(device.uid, device.password)
    sender.connect("127.0.0.1", stack.mosquitto.port)
    sender.loop_start()
    mosquitto = stack.mosquitto
    broker = (mosquitto.port, mosquitto.ingest_username, mosquitto.ingest_password)

    payloads = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i * 37 % 900)) for i in range(300)]
    payloads[150] = b'{"big": "' + b"y" * (READ_CHUNK + 5000) + b'"}'  # spans several reads
    client_id = f"test-consumer-{uuid.uuid4().hex[:8]}"
    collector = Collector(len(payloads))
    consumer = await Consumer.started(*broker, client_id, topic, collector, mode)

    def send() -> None:
        for i, payload in enumerate(payloads):
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("seq", str(i))]
            properties.MessageExpiryInterval = 600
            sender.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)

    await asyncio.to_thread(send)
    assert await waited(collector.enough), f"got {len(collector.messages)}"
    received = collector.messages
    assert [m.payload for m in received] == payloads
    assert {m.topic for m in received} == {topic}
    assert {m.qos for m in received} == {1}
    assert len({m.mid for m in received}) == len(received)
    assert collector.batches < len(received)  # handed over in batches, not one by one

    # Settle the first half only; the broker must redeliver exactly the second half.
    consumer.client.ack_many(m.mid for m in received[:150])
    await consumer.close()
    again = Collector(150)
    consumer = await Consumer.started(*broker, client_id, topic, again, mode)
    assert await waited(again.enough), f"redelivered {len(again.messages)}"
    assert [m.payload for m in again.messages] == payloads[150:]
    consumer.client.ack_many(m.mid for m in again.messages)
    await consumer.close()

    # All settled now: a new connection of the same session gets nothing back.
    last = Collector(1)
    consumer = await Consumer.started(*broker, client_id, topic, last, mode)
    assert not await waited(last.enough, 1.0), [(m.mid, m.payload[:30]) for m in last.messages]
    await consumer.close(ended_session())
    stop(sender)


async def test_stop_mid_stream_still_sends_the_acks_queued_just_before(make_broker) -> None:
    """The pipeline acknowledges its last batch, then the consumer stops at once while the
    broker is still sending (a backlog): those PUBACKs are processed by the broker (written
    before DISCONNECT, and the connection closed without a reset), so none of the
    acknowledged messages comes back, and all the others do."""
    broker = make_broker()
    allow_publisher(broker, "dev-flush", "pw")
    sender = publisher(broker.port, "dev-flush", "pw")
    topic = "fleet/dev-flush/telemetry"
    account = (broker.port, broker.ingest_username, broker.ingest_password, "flush-consumer")
    consumer = await Consumer.started(*account, topic, Collector(), "loop")
    await consumer.close()  # the session and its subscription stay on the broker
    payloads = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * 200) for i in range(5000)]
    await publish_all(sender, topic, payloads)  # queued for the session

    collector = Collector(500)
    # A window below the backlog, as the service has one: the broker is still sending.
    consumer = await Consumer.started(*account, topic, collector, "loop", receive_maximum=1000)
    assert await waited(collector.enough)
    acked = list(collector.messages)
    consumer.client.ack_many(m.mid for m in acked)
    await consumer.close(barrier=False)
    assert len(acked) < len(payloads), "the broker was not sending any more"

    rest = Collector(len(payloads) - len(acked))
    consumer = await Consumer.started(*account, topic, rest, "loop")
    assert await waited(rest.enough), f"{len(rest.messages)} of the rest came back"
    await asyncio.sleep(0.5)  # and nothing more
    came_back = {m.payload for m in rest.messages} & {m.payload for m in acked}
    assert not came_back, f"{len(came_back)} acknowledged messages came back"
    assert {m.payload for m in rest.messages} | {m.payload for m in acked} == set(payloads)
    consumer.client.ack_many(m.mid for m in rest.messages)
    await consumer.close(ended_session())
    stop(sender)


async def test_paused_reading_leaves_messages_with_the_broker_and_keeps_the_connection(
    make_broker,
) -> None:
    """Paused for over twice the keepalive: nothing is read, the connection is not dropped
    (the keepalive hears the bytes waiting), and on resuming everything arrives."""
    broker = make_broker()
    allow_publisher(broker, "dev-pause", "pw")
    sender = publisher(broker.port, "dev-pause", "pw")
    topic = "fleet/dev-pause/telemetry"
    account = (broker.port, broker.ingest_username, broker.ingest_password, "pause-consumer")
    collector = Collector(200)
    consumer = await Consumer.started(*account, topic, collector, "loop", keepalive=3)
    network = consumer.network
    assert network is not None

    network.pause_reading()
    assert network.reading_paused
    await publish_all(sender, topic, [b'{"n": %d}' % i for i in range(200)])
    await asyncio.sleep(9.0)  # keepalive 3 s: without the bytes-waiting rule, dropped at ~6 s
    assert collector.messages == []
    assert consumer.disconnects == 0
    network.resume_reading()
    assert await waited(collector.enough), f"got {len(collector.messages)}"
    assert [m.payload for m in collector.messages] == [b'{"n": %d}' % i for i in range(200)]
    assert consumer.disconnects == 0
    consumer.client.ack_many(m.mid for m in collector.messages)

    # Idle past the keepalive, reading: the pings keep the connection.
    await asyncio.sleep(7.0)
    assert consumer.disconnects == 0
    await consumer.close(ended_session())
    stop(sender)


async def test_a_connect_that_hangs_does_not_block_the_loop() -> None:
    """Connecting (DNS, TCP) happens in a worker thread: here a listener whose accept queue
    is full lets the TCP connect hang until paho's 5 s connect timeout, and the event loop
    runs on meanwhile; stopping does not wait for the attempt either."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the queue's one place
    consumer = Consumer(port, "nobody", "pw", "hang-consumer", "t", Collector(), "loop")
    began = time.monotonic()
    consumer.start()
    for _ in range(20):
        await asyncio.sleep(0.05)
    assert time.monotonic() - began < 2.0, "the event loop was blocked"
    began = time.monotonic()
    assert consumer.network is not None
    await consumer.network.stop()
    assert time.monotonic() - began < 1.0
    assert not consumer.suback.is_set()
    filler.close()
    listener.close()


async def test_connects_late_and_reconnects_after_a_broker_restart(make_broker) -> None:
    """The broker is down at start: `start()` returns at once and connection attempts go on
    in the background; once it is up the consumer subscribes. A broker restart later drops
    the connection; the consumer reconnects on its own (with paho's back-off) and receives
    again."""
    broker = make_broker()
    allow_publisher(broker, "dev-restart", "pw")
    topic = "fleet/dev-restart/telemetry"
    await asyncio.to_thread(broker.stop)
    account = (broker.port, broker.ingest_username, broker.ingest_password, "restart-consumer")
    collector = Collector(1)
    consumer = Consumer(*account, topic, collector, "loop")
    began = time.monotonic()
    consumer.start()
    assert time.monotonic() - began < 0.1
    await asyncio.sleep(2.0)  # attempts at 0, 0.5 and 1.5 s, refused
    assert not consumer.suback.is_set()

    await asyncio.to_thread(broker.start)
    assert await waited(consumer.suback), "no connection once the broker was up"
    sender = publisher(broker.port, "dev-restart", "pw")
    await publish_all(sender, topic, [b'{"n": 1}'])
    assert await waited(collector.enough)
    consumer.client.ack_many(m.mid for m in collector.messages)
    stop(sender)

    consumer.suback.clear()
    await asyncio.to_thread(broker.stop)
    assert await waited(consumer.disconnected), "the broker's going unnoticed"
    await asyncio.sleep(1.0)
    await asyncio.to_thread(broker.start)
    assert await waited(consumer.suback), "no reconnection after the broker restart"
    sender = publisher(broker.port, "dev-restart", "pw")
    await publish_all(sender, topic, [b'{"n": 2}'])

    deadline = time.monotonic() + TIMEOUT_S
    while not any(m.payload == b'{"n": 2}' for m in collector.messages):
        assert time.monotonic() < deadline, "nothing received after the restart"
        await asyncio.sleep(0.05)
    # QoS 1 is at least once: the PUBACK for n=1 may not have reached the broker before it
    # stopped, and then the broker rightly delivers n=1 again — but never anything else.
    first, *again, last = [m.payload for m in collector.messages]
    assert (first, last) == (b'{"n": 1}', b'{"n": 2}')
    assert set(again) <= {b'{"n": 1}'}
    consumer.client.ack_many(m.mid for m in collector.messages[1:])
    await consumer.close(ended_session())
    stop(sender)


async def test_qos_2_goes_through_paho_and_is_settled_by_ack(make_broker) -> None:
    """QoS 2 (if a subscription ever granted it) is left to paho: `on_message` after PUBREL,
    PUBCOMP only once `ack(mid, 2)` is called; settled, nothing comes back to the session."""
    broker = make_broker()
    allow_publisher(broker, "dev-qos2", "pw")
    sender = publisher(broker.port, "dev-qos2", "pw")
    topic = "fleet/dev-qos2/telemetry"
    account = (broker.port, broker.ingest_username, broker.ingest_password, "qos2-consumer")
    arrived: list[mqtt.MQTTMessage] = []
    enough = threading.Event()

    def on_message(_client, _userdata, message) -> None:
        arrived.append(message)
        if len(arrived) >= 3:
            enough.set()

    consumer = Consumer(*account, topic, Collector(), "loop", qos=2)
    consumer.client.on_message = on_message
    consumer.start()
    assert await waited(consumer.suback)
    await publish_all(sender, topic, [b"a", b"b", b"c"], qos=2)
    assert await waited(enough)
    assert [(m.payload, m.qos) for m in arrived] == [(b"a", 2), (b"b", 2), (b"c", 2)]
    for message in arrived:
        consumer.client.ack(message.mid, 2)
    await consumer.close()

    # An unsettled QoS 2 message would come back as a PUBREL (or a PUBLISH) on reconnection.
    logged: list[str] = []
    consumer = Consumer(*account, topic, Collector(), "loop", qos=2)
    consumer.client.on_log = lambda _c, _u, _level, line: logged.append(line)
    consumer.start()
    assert await waited(consumer.suback)
    await asyncio.sleep(1.5)
    assert not [line for line in logged if "PUBREL" in line or "PUBLISH" in line], logged
    await consumer.close(ended_session())
    stop(sender)
