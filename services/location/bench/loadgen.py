"""Load generation and measurement for `bench/ingest.py`, as cheap per message as Python allows.

Python MQTT clients (paho: a thread per client, a callback and several objects per message)
cannot offer 10,000 QoS 1 messages/s from 200 device connections on two shared cores; the
previous benchmark measured its own publishers. These speak the wire protocols directly:

- `publisher_main`: one process driving a share of the devices, each over its own MQTT 3.1.1
  connection with its own credentials, QoS 1 with a bounded number of unacknowledged
  messages per device (a real device's in-flight window), paced to an offered rate (or as
  fast as the broker takes them). Each payload carries its publish time as `ts`, so the
  receiver measures publish -> visible latency from the message itself.
- `null_subscriber_main`: the broker's ceiling: a QoS 1 subscriber that does nothing but
  count and acknowledge (PUBACK) what it receives.
- `live_listener_main`: counts `position` messages on a Redis channel (`fleet:live:{org}`,
  published only after the commit and the latest-hash update) with their arrival times.

Each of these is a process (multiprocessing), so none of them shares a GIL with the others.
"""

import contextlib
import math
import re
import selectors
import socket
import struct
import time

# ------------------------------------------------------------------------------ MQTT


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def mqtt_connect(port: int, client_id: str, username: str, password: str) -> socket.socket:
    """An MQTT 3.1.1 connection (clean session, no keepalive), CONNACK checked."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _utf8("MQTT") + bytes([4, 0b11000010]) + struct.pack("!H", 0)
    body += _utf8(client_id) + _utf8(username) + _utf8(password)
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        if not chunk:
            raise ConnectionError(f"broker closed the connection of {client_id}")
        connack += chunk
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNACK refused for {client_id}: {connack!r}")
    return sock


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH, QoS 1."""
    variable = struct.pack("!H", len(topic)) + topic + struct.pack("!H", packet_id)
    return b"\x32" + _remaining_length(len(variable) + len(payload)) + variable + payload


class _Device:
    __slots__ = (
        "base_lat",
        "base_lon",
        "inflight",
        "last_ts",
        "next_id",
        "phase",
        "sock",
        "topic",
        "uid",
    )

    def __init__(self, uid: str, sock: socket.socket, topic: bytes, index: int) -> None:
        self.uid = uid
        self.sock = sock
        self.topic = topic
        self.next_id = 1
        self.inflight = 0
        # Spread over the benchmark's city (the geofence phase places zones there too).
        self.base_lat = 10.78 + 0.12 * math.sin(index * 2.399)
        self.base_lon = 106.70 + 0.12 * math.cos(index * 2.399)
        self.phase = index * 0.37
        self.last_ts = 0.0


def publisher_main(
    port: int,
    devices: list[tuple[str, str]],
    topic_kind: str,
    rate_per_s: float,
    duration_s: float,
    start_at: float,
    per_message: int,
    max_inflight: int,
    results,
) -> None:
    """Publish for `duration_s` from `start_at`; `rate_per_s` 0 = as fast as acknowledged.

    `per_message` > 1 makes every message an array of that many positions (a device
    replaying a backlog). Puts `(sent_messages, sent_positions, acked, first, last,
    cpu_seconds)` on `results`.
    """
    try:
        _publish(
            port,
            devices,
            topic_kind,
            rate_per_s,
            duration_s,
            start_at,
            per_message,
            max_inflight,
            results,
        )
    except BaseException as exc:
        results.put(exc)
        raise


def _publish(
    port, devices, topic_kind, rate_per_s, duration_s, start_at, per_message, max_inflight, results
) -> None:
    selector = selectors.DefaultSelector()
    fleet: list[_Device] = []
    for index, (uid, password) in enumerate(devices):
        sock = mqtt_connect(port, uid, uid, password)
        device = _Device(uid, sock, f"fleet/{uid}/{topic_kind}".encode(), index)
        selector.register(sock, selectors.EVENT_READ, device)
        fleet.append(device)
    pending_bytes = {device.uid: 0 for device in fleet}

    def read_acks(timeout: float) -> int:
        acked = 0
        for key, _ in selector.select(timeout):
            device: _Device = key.data
            data = device.sock.recv(65536)
            if not data:
                raise ConnectionError(f"broker closed {device.uid}")
            # Only PUBACKs (4 bytes each) come back on a publisher's connection.
            total = pending_bytes[device.uid] + len(data)
            count, pending_bytes[device.uid] = divmod(total, 4)
            device.inflight -= count
            acked += count
        return acked

    while time.time() < start_at:
        time.sleep(0.001)
    sent = positions = acked = 0
    first = last = 0.0
    ends_at = start_at + duration_s
    tick = 0.005
    owed = 0.0
    previous = time.time()
    cursor = 0
    count = len(fleet)
    sequence = 0
    while True:
        now = time.time()
        if now >= ends_at:
            break
        if rate_per_s:
            owed += (now - previous) * rate_per_s
            owed = min(owed, rate_per_s * 0.5)  # a stall is not made up in a burst
        else:
            owed = count * 4
        previous = now
        due = int(owed)
        outgoing: dict[_Device, list[bytes]] = {}
        blocked = 0
        while due > 0 and blocked < count:
            device = fleet[cursor]
            cursor = (cursor + 1) % count
            if device.inflight >= max_inflight:
                blocked += 1
                continue
            blocked = 0
            if topic_kind == "bench":
                payload = b"{}"
            else:
                elements = []
                for k in range(per_message):
                    sequence += 1
                    # Strictly increasing per device (whole microseconds, as stored).
                    ts = max(now - (per_message - 1 - k) * 1e-5, device.last_ts + 1e-5)
                    device.last_ts = ts
                    angle = ts / 60.0 + device.phase
                    elements.append(
                        b'{"ts":%.6f,"lat":%.6f,"lon":%.6f,"speed":%.1f}'
                        % (
                            ts,
                            device.base_lat + 0.01 * math.sin(angle),
                            device.base_lon + 0.01 * math.cos(angle),
                            40 + 30 * math.sin(angle * 3),
                        )
                    )
                payload = elements[0] if per_message == 1 else b"[" + b",".join(elements) + b"]"
            packet = publish_packet(device.topic, device.next_id, payload)
            device.next_id = device.next_id % 65535 + 1
            device.inflight += 1
            outgoing.setdefault(device, []).append(packet)
            sent += 1
            positions += per_message
            due -= 1
            owed -= 1
        if outgoing:
            if not first:
                first = time.time()
            for device, packets in outgoing.items():
                device.sock.sendall(b"".join(packets))
            last = time.time()
        acked += read_acks(0)
        if rate_per_s:
            delay = tick - (time.time() - now)
            if delay > 0:
                acked += read_acks(delay)
        elif blocked >= count:
            acked += read_acks(0.001)
    deadline = time.time() + 30
    while acked < sent and time.time() < deadline:
        acked += read_acks(0.05)
    for device in fleet:
        with contextlib.suppress(OSError):
            device.sock.sendall(b"\xe0\x00")  # DISCONNECT
        device.sock.close()
    results.put((sent, positions, acked, first, last, time.process_time()))


def null_subscriber_main(port: int, username: str, password: str, topic: str, ready, results):
    """Subscribe at QoS 1, PUBACK everything, count arrivals per 50 ms bucket.

    Runs until the parent sets nothing more arrives for 3 s after the first message, then
    puts `(received, buckets, cpu_seconds)` on `results` (`buckets`: {bucket_start_time:
    count}).
    """
    sock = mqtt_connect(port, f"null-{time.time_ns() % 10**9}", username, password)
    body = struct.pack("!H", 1) + _utf8(topic) + b"\x01"
    sock.sendall(b"\x82" + _remaining_length(len(body)) + body)
    sock.settimeout(0.2)
    buffer = bytearray()
    received = 0
    buckets: dict[float, int] = {}
    subscribed = False
    quiet_since = time.time()
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            if received and time.time() - quiet_since > 3.0:
                break
            if not received and time.time() - quiet_since > 120.0:
                break
            continue
        if not data:
            break
        now = time.time()
        quiet_since = now
        buffer += data
        acks = bytearray()
        offset = 0
        end = len(buffer)
        arrived = 0
        while end - offset >= 2:
            header = buffer[offset]
            # Remaining length (variable length, up to 4 bytes).
            multiplier, length, i = 1, 0, offset + 1
            complete = False
            while i < end:
                byte = buffer[i]
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                i += 1
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or end - i < length:
                break
            kind = header >> 4
            if kind == 3:
                arrived += 1
                if (header >> 1) & 3:
                    topic_length = (buffer[i] << 8) | buffer[i + 1]
                    acks += b"\x40\x02" + buffer[i + 2 + topic_length : i + 4 + topic_length]
            elif kind == 9 and not subscribed:
                subscribed = True
                ready.set()
            offset = i + length
        del buffer[:offset]
        if acks:
            # Blocking: a broker busy past the read timeout reads the acks a little later.
            sock.settimeout(None)
            sock.sendall(acks)
            sock.settimeout(0.2)
        if arrived:
            received += arrived
            bucket = now - now % 0.05
            buckets[bucket] = buckets.get(bucket, 0) + arrived
    sock.close()
    results.put((received, buckets, time.process_time()))


# ------------------------------------------------------------------------------ Redis

_MARKER = b'"recorded_at"'
_RECORDED_AT = re.compile(rb'"recorded_at":"([0-9T:.\-]+)Z"')


def live_listener_main(redis_port: int, channel: str, ready, stop, seen, results) -> None:
    """Keep every chunk read from a Redis SUBSCRIBE connection with its arrival time.

    The parsing (and so the latency of each `position` message) happens after `stop` is
    set, so the listener costs little CPU while it listens; `seen` (a shared counter) is
    kept up to date with the number of `position` messages so far. Puts a list of
    `(arrival_time, recorded_at_iso)` on `results`.
    """
    sock = socket.create_connection(("127.0.0.1", redis_port))
    name = channel.encode()
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    sock.settimeout(0.2)
    chunks: list[tuple[float, bytes]] = []
    confirmed = False
    tail = b""
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not data:
            break
        if not confirmed:
            confirmed = True
            ready.set()
            continue
        chunks.append((time.time(), data))
        # The marker may straddle two reads: count over the previous read's tail too.
        count = (tail + data).count(_MARKER)
        tail = data[-(len(_MARKER) - 1) :]
        if count:
            seen.value += count
    sock.close()
    # A message split across chunks is attributed to the chunk holding its end.
    arrivals: list[tuple[float, str]] = []
    carry = b""
    for at, data in chunks:
        data = carry + data
        last_end = 0
        for match in _RECORDED_AT.finditer(data):
            arrivals.append((at, match.group(1).decode()))
            last_end = match.end()
        carry = data[last_end:][-200:]
    results.put(arrivals)
