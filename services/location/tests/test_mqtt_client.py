"""The consumer's paho client: chunked reads, lean QoS 1 decoding, and batched PUBACKs.

Against the real broker: MQTT 5 messages with properties (which the lean decoder skips),
payloads larger than one socket read, order kept, and `ack_many` acknowledging exactly the
messages it names (the broker redelivers the rest to the same persistent session).
"""

import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet_location.ingest.mqtt import READ_CHUNK, BufferedClient
from fleet_location.ingest.pipeline import InboundMessage

TIMEOUT_S = 20.0


class Collector:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.batches = 0
        self.enough = threading.Event()
        self.expected = 0

    def __call__(self, messages: list[InboundMessage]) -> None:
        self.batches += 1
        self.messages.extend(messages)
        if len(self.messages) >= self.expected:
            self.enough.set()


def consumer(stack, client_id: str, topic: str, collector: Collector) -> BufferedClient:
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        on_messages=collector,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    client.username_pw_set(stack.mosquitto.ingest_username, stack.mosquitto.ingest_password)
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 300
    client.connect("127.0.0.1", stack.mosquitto.port, clean_start=False, properties=properties)
    client.loop_start()
    assert subscribed.wait(TIMEOUT_S), "consumer could not subscribe"
    return client


def close(client: BufferedClient, properties: Properties | None = None) -> None:
    """Disconnect once the broker has handled everything sent before (the PUBACKs).

    A SUBACK comes back only after the broker has read every earlier packet of this
    connection, so a subscription round trip is the barrier.
    """
    barrier = threading.Event()
    client.on_subscribe = lambda *_: barrier.set()
    client.subscribe(f"barrier/{uuid.uuid4().hex}", qos=1)
    assert barrier.wait(TIMEOUT_S), "no SUBACK"
    gone = threading.Event()
    client.on_disconnect = lambda *_: gone.set()
    client.disconnect(properties=properties)
    assert gone.wait(TIMEOUT_S), "consumer did not disconnect"
    client.loop_stop()


def test_messages_arrive_whole_in_order_and_only_acked_ones_are_settled(
    stack, org_a, make_device
) -> None:
    device = make_device(org_a)
    topic = f"fleet/{device.uid}/telemetry"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.uid, protocol=mqtt.MQTTv5)
    publisher.username_pw_set(device.uid, device.password)
    publisher.connect("127.0.0.1", stack.mosquitto.port)
    publisher.loop_start()

    payloads = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i * 37 % 900)) for i in range(300)]
    payloads[150] = b'{"big": "' + b"y" * (READ_CHUNK + 5000) + b'"}'  # spans several reads
    client_id = f"test-consumer-{uuid.uuid4().hex[:8]}"
    collector = Collector()
    collector.expected = len(payloads)
    client = consumer(stack, client_id, topic, collector)
    for i, payload in enumerate(payloads):
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = [("seq", str(i))]
        properties.MessageExpiryInterval = 600
        publisher.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)
    assert collector.enough.wait(TIMEOUT_S), f"got {len(collector.messages)}"
    received = collector.messages
    assert [m.payload for m in received] == payloads
    assert {m.topic for m in received} == {topic}
    assert {m.qos for m in received} == {1}
    assert len({m.mid for m in received}) == len(received)
    assert collector.batches < len(received)  # handed over in batches, not one by one

    # Settle the first half only; the broker must redeliver exactly the second half.
    client.ack_many(m.mid for m in received[:150])
    close(client)
    again = Collector()
    again.expected = 150
    client = consumer(stack, client_id, topic, again)
    assert again.enough.wait(TIMEOUT_S), f"redelivered {len(again.messages)}"
    assert [m.payload for m in again.messages] == payloads[150:]
    client.ack_many(m.mid for m in again.messages)
    close(client)

    # All settled now: a new connection of the same session gets nothing back.
    last = Collector()
    last.expected = 1
    client = consumer(stack, client_id, topic, last)
    assert not last.enough.wait(1.0), [(m.mid, m.payload[:30]) for m in last.messages][:5]
    properties = Properties(PacketTypes.DISCONNECT)
    properties.SessionExpiryInterval = 0
    close(client, properties)
    publisher.disconnect()
    publisher.loop_stop()
