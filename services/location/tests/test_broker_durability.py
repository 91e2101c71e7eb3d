"""Never lose a position the broker acknowledged: broker restarts and crashes, location
outages, and location replicas leaving (docs/ingest-durability.md).

Real Mosquitto (the devstack's configuration, with restore_shared_subscriptions.py before each
start) and real location processes. Devices count the PUBACKs they get; each test compares
what the broker acknowledged with what the database holds.
"""

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet_devstack.servers import RESTORE_SHARED_SUBSCRIPTIONS, Mosquitto, port_in_use
from fleet_location.config import Settings

from .conftest import allow_publisher

pytestmark = pytest.mark.slow

STEP = timedelta(milliseconds=10)  # between one device's positions' timestamps
AUTOSAVE_INTERVAL_S = 1  # the devstack's, as infrastructure/mosquitto/mosquitto.conf
# How late a position may be stored while replicas come and go: "a few seconds", against
# a share stranded in a departed replica's session, which would wait for its return.
MAX_DELAY_S = 5.0


def _load_restorer():
    spec = importlib.util.spec_from_file_location("restorer", RESTORE_SHARED_SUBSCRIPTIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Device:
    device_id: str
    uid: str
    password: str


@dataclass
class Stream:
    """One device publishing `count` QoS 1 positions at `rate_per_s` from a thread, and which
    of them the broker acknowledged (PUBACK), and when."""

    device: Device
    port: int
    count: int
    rate_per_s: float
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    published_at: dict[int, float] = field(default_factory=dict)
    acked_at: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # No lock of ours around paho's calls: paho runs on_publish holding its own lock,
        # which publish() takes too. Fewer than 65,536 positions: a mid names one position.
        self._sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self._acked_mid_at: dict[int, float] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.device.uid, protocol=mqtt.MQTTv311
        )
        client.username_pw_set(self.device.uid, self.device.password)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.2, 1)
        client.on_publish = self._on_publish
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert connected.wait(15), "device could not connect"
        self.client = client
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, _client, _userdata, mid, _reason_code, _properties) -> None:
        self._acked_mid_at[mid] = time.time()

    def _run(self) -> None:
        interval = 1.0 / self.rate_per_s
        began = time.monotonic()
        topic = f"fleet/{self.device.uid}/telemetry"
        for seq in range(self.count):
            payload = json.dumps({"ts": self.ts(seq).isoformat(), "lat": 1.0, "lon": seq * 1e-5})
            self.published_at[seq] = time.time()
            self._sent.append((seq, self.client.publish(topic, payload, qos=1)))
            delay = began + (seq + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def ts(self, seq: int) -> datetime:
        return self.start + seq * STEP

    def seq(self, recorded_at: datetime) -> int:
        return round((recorded_at - self.start) / STEP)

    def begin(self) -> "Stream":
        self._thread.start()
        return self

    def finish(self, timeout_s: float = 60.0) -> None:
        """Wait for the last publish, then for the PUBACKs still due (the client resends
        what is unacknowledged after a reconnect)."""
        self._thread.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        # A publish made while the broker was away is sent on reconnect (its MessageInfo
        # reports the failed first attempt): the PUBACK callback alone says what was acked.
        while not all(info.mid in self._acked_mid_at for _seq, info in self._sent):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()
        self._collect()

    def _collect(self) -> None:
        for seq, info in list(self._sent):
            at = self._acked_mid_at.get(info.mid)
            if at is not None:
                self.acked_at[seq] = at

    def acked(self) -> set[int]:
        self._collect()
        return set(self.acked_at)


class Harness:
    """A private broker, location processes on it, devices and the location database."""

    def __init__(self, broker: Mosquitto, env_for, run_service, db) -> None:
        self.broker = broker
        self.env_for = env_for
        self.run_service = run_service
        self.db = db
        self.tag = uuid.uuid4().hex[:6]
        self.locations: dict[int, object] = {}

    def client_id(self, ordinal: int) -> str:
        return f"loc-{self.tag}-{ordinal}"

    async def start_location(self, ordinal: int) -> None:
        env = self.env_for(LOCATION_MQTT_CLIENT_ID=self.client_id(ordinal))
        running = await asyncio.to_thread(self.run_service, "location", env)
        self.locations[ordinal] = running
        await wait_until(lambda: _ready(running.url), f"location {ordinal} ready", 120.0)

    async def start_locations(self, *ordinals: int) -> None:
        await asyncio.gather(*(self.start_location(ordinal) for ordinal in ordinals))

    async def stop_location(self, ordinal: int, sig: int = signal.SIGTERM) -> str:
        """Stop it (SIGTERM as Kubernetes does, or SIGKILL); returns its log."""
        running = self.locations.pop(ordinal)
        running.process.send_signal(sig)
        await asyncio.to_thread(running.process.wait, 60)
        return running.log_path.read_text()

    async def stop_all(self) -> None:
        for ordinal in list(self.locations):
            await self.stop_location(ordinal)

    async def restart_broker(self) -> None:
        await asyncio.to_thread(self.broker.stop)  # SIGTERM: the broker saves everything
        await asyncio.to_thread(self.broker.start)

    def kill_broker(self) -> None:
        pid = int(self.broker.pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid) or port_in_use(self.broker.port):
            time.sleep(0.01)

    async def stored(self, stream: Stream) -> list[int]:
        rows = await self.db.fetch(
            "SELECT recorded_at FROM telemetry WHERE device_id = $1",
            uuid.UUID(stream.device.device_id),
        )
        return [stream.seq(row["recorded_at"]) for row in rows]

    async def delays(self, stream: Stream) -> list[float]:
        """Seconds from each position's publish to its commit (the row's received_at)."""
        rows = await self.db.fetch(
            "SELECT recorded_at, received_at FROM telemetry WHERE device_id = $1",
            uuid.UUID(stream.device.device_id),
        )
        return [
            row["received_at"].timestamp() - stream.published_at[stream.seq(row["recorded_at"])]
            for row in rows
        ]

    async def wait_stored(self, streams: list[Stream], timeout_s: float = 60.0) -> None:
        """Until every acknowledged position is stored (or the time is up: the caller's
        comparison then says what is missing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stored = [set(await self.stored(s)) for s in streams]
            if all(s.acked() <= have for s, have in zip(streams, stored, strict=True)):
                return
            await asyncio.sleep(0.2)

    async def assert_exactly_once(self, streams: list[Stream]) -> int:
        """Every acknowledged position stored, once; nothing stored that was not sent."""
        total = 0
        for stream in streams:
            stored = await self.stored(stream)
            missing = stream.acked() - set(stored)
            assert not missing, f"{len(missing)} acknowledged positions lost: {sorted(missing)}"
            assert len(stored) == len(set(stored)), "a position was stored twice"
            assert set(stored) <= set(stream.published_at)
            total += len(stream.acked())
        return total

    def session_present(self, ordinal: int) -> bool:
        """Whether the broker still holds that replica's session (this takes it over for a
        moment, then leaves it as it was)."""
        found: dict[str, bool] = {}
        done = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id(ordinal), protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self.broker.ingest_username, self.broker.ingest_password)

        def on_connect(_client, _userdata, flags, _reason, _properties) -> None:
            found["present"] = flags.session_present
            done.set()

        client.on_connect = on_connect
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 1  # take over as little as possible: it is not acked
        client.connect("127.0.0.1", self.broker.port, clean_start=False, properties=properties)
        client.loop_start()
        assert done.wait(15)
        ending = Properties(PacketTypes.DISCONNECT)
        ending.SessionExpiryInterval = 0 if not found["present"] else 3600
        client.disconnect(properties=ending)
        client.loop_stop()
        return found["present"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as http:
        try:
            return (await http.get(f"{url}/health/readiness")).status_code == 200
        except httpx.HTTPError:
            return False


async def wait_until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s}s"
        await asyncio.sleep(0.1)


@pytest.fixture
async def harness(make_broker, migrated_database, location_env_for, run_service, db_for):
    broker = make_broker()
    database_url = migrated_database("location")

    def env_for(**extra) -> dict:
        return location_env_for(
            database_url,
            MQTT_PORT=str(broker.port),
            LOCATION_MQTT_USERNAME=broker.ingest_username,
            LOCATION_MQTT_PASSWORD=broker.ingest_password,
            LOCATION_MQTT_SHARE_GROUP="location",
            **extra,
        )

    harness = Harness(broker, env_for, run_service, await db_for(database_url))
    yield harness
    await harness.stop_all()


@pytest.fixture
def devices(harness, org_a, make_device):
    def factory(n: int) -> list[Device]:
        made = []
        for _ in range(n):
            device = make_device(org_a)
            allow_publisher(harness.broker, device.uid, device.password)
            made.append(Device(device.device_id, device.uid, device.password))
        return made

    return factory


def streams_of(harness: Harness, devices: list[Device], count: int, rate: float) -> list[Stream]:
    return [Stream(device, harness.broker.port, count, rate) for device in devices]


def acked_between(streams: list[Stream], start: float, end: float) -> int:
    return sum(1 for s in streams for at in s.acked_at.values() if start <= at < end)


@pytest.mark.parametrize("replicas", [1, 2])
async def test_graceful_broker_restart_mid_stream_loses_nothing(harness, devices, replicas):
    await harness.start_locations(*range(replicas))
    streams = [s.begin() for s in streams_of(harness, devices(3), 400, 100)]
    await asyncio.sleep(1.5)
    restart_at = time.time()
    await harness.restart_broker()
    restarted_at = time.time()
    await asyncio.gather(*(asyncio.to_thread(s.finish) for s in streams))
    await harness.wait_stored(streams)
    acked = await harness.assert_exactly_once(streams)
    # Mid-stream: positions were acknowledged before the restart and after it.
    assert acked_between(streams, 0, restart_at) > 0
    assert acked_between(streams, restarted_at, float("inf")) > 0
    assert acked >= 0.9 * sum(s.count for s in streams)


async def test_broker_restart_while_no_location_is_connected_loses_nothing(harness, devices):
    """Both replicas stopped (the anchor keeps its session, the other leaves the group), the
    broker restarted during the stream: the anchor's session is back with its subscription
    and receives everything; the replicas start again and store it all."""
    await harness.start_locations(0, 1)
    await harness.stop_location(1)
    await harness.stop_location(0)
    streams = [s.begin() for s in streams_of(harness, devices(2), 300, 100)]
    await asyncio.sleep(1.0)
    await harness.restart_broker()
    await asyncio.gather(*(asyncio.to_thread(s.finish) for s in streams))
    assert not any([await harness.stored(s) for s in streams])  # nobody was there to store
    await harness.start_locations(0, 1)
    await harness.wait_stored(streams)
    acked = await harness.assert_exactly_once(streams)
    assert acked == sum(s.count for s in streams)


async def test_broker_sigkill_loses_at_most_what_it_had_not_saved(harness, devices):
    """Location down (positions queue in the broker), then the broker SIGKILLed: everything
    in its last save is stored once it is back, and what is lost was acknowledged to the
    devices within the last autosave interval (the RPO, docs/ingest-durability.md)."""
    await harness.start_location(0)
    rate_per_device, count = 100, 500
    streams = [s.begin() for s in streams_of(harness, devices(2), count, rate_per_device)]
    await asyncio.sleep(1.0)
    await harness.stop_location(0)  # the anchor: its session stays and queues
    await asyncio.sleep(2.5)
    await asyncio.to_thread(harness.kill_broker)
    killed_at = time.time()
    snapshot = harness.broker.persistence_file
    saved_at = snapshot.stat().st_mtime
    saved = harness.broker.data_dir.parent / "saved-at-kill.db"
    shutil.copy(snapshot, saved)
    await asyncio.to_thread(harness.broker.start)
    await harness.start_location(0)
    await asyncio.gather(*(asyncio.to_thread(s.finish) for s in streams))
    await harness.wait_stored(streams, timeout_s=20)

    restorer = _load_restorer()
    in_save: dict[str, set[int]] = {s.device.uid: set() for s in streams}
    by_uid = {s.device.uid: s for s in streams}
    for kind, body in restorer.read_chunks(saved.read_bytes()):
        if kind != restorer.MSG_STORE:
            continue
        head = restorer.STORE_HEAD.unpack_from(body)
        start = restorer.STORE_HEAD.size + head[4] + head[5]
        topic = body[start : start + head[6]].decode()
        uid = topic.split("/")[1] if topic.startswith("fleet/") else None
        if uid in by_uid:
            payload = json.loads(body[start + head[6] : start + head[6] + head[2]])
            in_save[uid].add(by_uid[uid].seq(datetime.fromisoformat(payload["ts"])))
    assert sum(map(len, in_save.values())) > 0, "the last save held no queued position"

    lost = []
    for stream in streams:
        stored = await harness.stored(stream)
        assert len(stored) == len(set(stored)), "a position was stored twice"
        assert in_save[stream.device.uid] <= set(stored), "a saved position was lost"
        lost += [stream.acked_at[seq] for seq in stream.acked() - set(stored)]
    # Only what the broker acknowledged after its last save began (a save takes well under
    # a second here) and before it died.
    assert all(saved_at - 1.0 <= at <= killed_at for at in lost), (saved_at, killed_at, lost)
    bound = len(streams) * rate_per_device * (AUTOSAVE_INTERVAL_S + 1)
    assert len(lost) <= bound
    print(f"SIGKILL: {len(lost)} acknowledged positions lost (bound {bound})")


async def test_long_location_outage_every_position_stored(harness, devices):
    """The promised outage (docs/ingest-durability.md): every location process down for
    5 minutes at 1,000 positions/s, here shortened by rate to 5 minutes' worth at 1/10 of
    it, 30,000 positions, with a broker restart during it; the shipped queue limit holds
    the full-rate outage of these positions with room to spare."""
    await harness.start_location(0)
    await harness.stop_location(0)
    per_device = 7_500
    streams = [s.begin() for s in streams_of(harness, devices(4), per_device, 5_000)]
    await asyncio.sleep(2.0)
    await harness.restart_broker()
    await asyncio.gather(*(asyncio.to_thread(s.finish, 120) for s in streams))
    await harness.start_location(0)
    await harness.wait_stored(streams, timeout_s=90)
    acked = await harness.assert_exactly_once(streams)
    assert acked == 4 * per_device

    payload_bytes = len(json.dumps({"ts": streams[0].ts(0).isoformat(), "lat": 1.0, "lon": 1.0}))
    options = dict(
        line.split(None, 1)
        for line in (harness.broker.data_dir / "mosquitto.conf").read_text().splitlines()
    )
    assert options["max_queued_messages"] == "0"
    assert 300_000 * payload_bytes <= int(options["max_queued_bytes"]) / 2


async def test_three_replicas_scale_in_and_out_store_everything_once_and_promptly(harness, devices):
    """Three replicas on one stream; the third, then the second stopped with SIGTERM as
    Kubernetes does (each leaves the group: its share goes to the others, it takes in and
    acknowledges what its session holds, then ends its session), the second started again."""
    await harness.start_locations(0, 1, 2)
    streams = [s.begin() for s in streams_of(harness, devices(4), 900, 50)]
    await asyncio.sleep(3.0)
    log_2 = await harness.stop_location(2)
    await asyncio.sleep(2.0)
    stopped_at = time.monotonic()
    log_1 = await harness.stop_location(1)
    await asyncio.sleep(6.0)
    await harness.start_location(1)
    away_s = time.monotonic() - stopped_at
    await asyncio.gather(*(asyncio.to_thread(s.finish) for s in streams))
    await harness.wait_stored(streams)
    acked = await harness.assert_exactly_once(streams)
    assert acked == sum(s.count for s in streams)
    for log in (log_2, log_1):
        assert "MQTT left the shared subscription" in log
        assert "MQTT session ended" in log
    assert not await asyncio.to_thread(harness.session_present, 2)
    # A share stranded in replica 1's session would have waited about `away_s` (over 6 s);
    # on a machine busy enough to start a process slowly, commits are slower too.
    delays = [d for s in streams for d in await harness.delays(s)]
    assert max(delays) <= max(MAX_DELAY_S, away_s / 2), f"a position waited {max(delays):.1f}s"
    print(f"scale-in/out: {acked} positions, max delay {max(delays):.2f}s")


async def test_a_sigkilled_replica_share_waits_in_its_session_until_its_id_leaves(harness, devices):
    """SIGKILL, never restarted: its session stays in the group and keeps receiving its
    share, which waits there. Recovery (the runbook's): start a replica with that client id
    and stop it with SIGTERM: it takes in the session's positions and ends the session."""
    await harness.start_locations(0, 1)
    streams = [s.begin() for s in streams_of(harness, devices(2), 300, 100)]
    await asyncio.sleep(0.5)
    await harness.stop_location(1, signal.SIGKILL)
    await asyncio.gather(*(asyncio.to_thread(s.finish) for s in streams))
    await asyncio.sleep(2.0)
    waiting = 0
    for stream in streams:
        waiting += len(stream.acked() - set(await harness.stored(stream)))
    assert waiting > 0.3 * sum(s.count for s in streams)  # about half: the dead one's share
    await harness.start_location(1)
    await harness.stop_location(1)
    await harness.wait_stored(streams)
    assert await harness.assert_exactly_once(streams) == sum(s.count for s in streams)
    assert not await asyncio.to_thread(harness.session_present, 1)


@pytest.mark.parametrize(
    ("client_id", "slot", "leaves"),
    [
        ("location-0", None, False),  # StatefulSet ordinal 0: the anchor
        ("location-0", 0, False),
        ("location-0", 1, True),  # its second gunicorn worker
        ("location-2", None, True),
        ("location-2", 0, True),
        ("fleet-location", 0, False),  # compose's single replica
        ("fleet-location", 1, True),
    ],
)
def test_every_session_but_the_anchor_leaves_on_stop(monkeypatch, client_id, slot, leaves):
    monkeypatch.setenv("LOCATION_MQTT_CLIENT_ID", client_id)
    monkeypatch.delenv("LOCATION_MQTT_LEAVE_ON_STOP", raising=False)
    if slot is None:
        monkeypatch.delenv("FLEET_WORKER_SLOT", raising=False)
    else:
        monkeypatch.setenv("FLEET_WORKER_SLOT", str(slot))
    assert Settings().mqtt_leave_on_stop is leaves
    monkeypatch.setenv("LOCATION_MQTT_LEAVE_ON_STOP", "false")
    assert Settings().mqtt_leave_on_stop is False
