"""The TCP listeners for hardware trackers: Teltonika (5027) and GT06 (5023).

One asyncio protocol object per connection, no thread and no task per connection: a task
exists only while one of its frames is being handled (a commit awaited), and reading is
paused meanwhile (once more bytes come), so a connection holds at most one frame in work
and a bounded buffer.
One sweep task a second closes connections that stall (handshake, half frame, idle).
Every refusal is counted in `telemetry_rejected_total{reason}`; nothing a client sends can
raise out of here and stop a listener.

Listeners bind with SO_REUSEPORT, so gunicorn's workers (and replicas on one host) share a
port and the kernel spreads connections over them.
"""

import asyncio
import time
from collections import Counter
from typing import cast

from redis.asyncio import Redis

from fleet_common.logging import get_logger
from fleet_common.tasks import stop_tasks
from fleet_location.config import Settings
from fleet_location.ingest import metrics as ingest_metrics
from fleet_location.ingest.devices import DeviceDirectory
from fleet_location.ingest.pipeline import IngestPipeline
from fleet_location.trackers import metrics
from fleet_location.trackers.commands import CommandRelay
from fleet_location.trackers.errors import ProtocolError, TrackerReason
from fleet_location.trackers.framing import Gt06Framer, TeltonikaFramer
from fleet_location.trackers.sessions import Gt06Session, Session, TeltonikaSession

log = get_logger(__name__)

PROTOCOLS = ("teltonika", "gt06")
_FRAMES = {protocol: metrics.FRAMES.labels(protocol) for protocol in PROTOCOLS}


class Connection(asyncio.Protocol):
    def __init__(self, server: "TrackerServer", protocol: str) -> None:
        self.server = server
        self.protocol = protocol
        settings = server.settings
        self.framer = (
            TeltonikaFramer(settings.tracker_max_frame_bytes)
            if protocol == "teltonika"
            else Gt06Framer(settings.tracker_max_frame_bytes)
        )
        self.session: Session = (
            TeltonikaSession(self) if protocol == "teltonika" else Gt06Session(self)
        )
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.source = ""
        self.opened_at = self.last_read_at = time.monotonic()
        self.partial_since: float | None = None
        self.task: asyncio.Task | None = None
        self.task_started_at = 0.0
        self.paused = False  # reading, while a frame is in work and more bytes came
        self.timed_out = False
        self.closed = False
        self._skipped = 0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (the service's loop) are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if peer else ""
        refusal = self.server.admit(self)
        if refusal is not None:
            ingest_metrics.REJECTED.labels(refusal).inc()
            metrics.CLOSED.labels(refusal).inc()
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_read_at = time.monotonic()
        self.buffer += data
        if len(self.buffer) > self.server.max_buffer_bytes:
            self.fail(TrackerReason.BUFFER_OVERFLOW)
            return
        if self.task is None:
            self._pump()
        elif not self.paused:
            # More bytes while a frame is in work: read no more until it is done. Paused
            # only now, not for every frame: a tracker waits for its answer before sending
            # again, and pausing and resuming each frame is two system calls a packet.
            assert self.transport is not None
            self.transport.pause_reading()
            self.paused = True

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            metrics.CLOSED.labels("peer_closed").inc()
        self.server.forget(self)
        # An unfinished frame's records are either committed (and their answer lost: the
        # device sends them again, stored once) or still on the way to the commit.

    # ------------------------------------------------------------------ frames

    def _pump(self) -> None:
        consumed = False
        while not self.closed and self.task is None:
            try:
                frame = self.framer.next_frame(self.buffer)
            except ProtocolError as exc:
                self.fail(exc.reason)
                return
            finally:
                self._count_skipped()
            if frame is None:
                break
            consumed = True
            _FRAMES[self.protocol].inc()
            self.task = asyncio.create_task(self._run(frame))
        if not self.buffer:
            self.partial_since = None
        elif consumed or self.partial_since is None:
            self.partial_since = time.monotonic()

    def _count_skipped(self) -> None:
        skipped = self.framer.skipped
        if skipped:
            self.framer.skipped = 0
            self._skipped += skipped
            ingest_metrics.REJECTED.labels(TrackerReason.GARBAGE).inc()
            if self._skipped > self.server.settings.tracker_max_garbage_bytes:
                self.fail(TrackerReason.GARBAGE)

    async def _run(self, frame) -> None:
        # No timer per frame (one per packet is a cost at thousands a second): the sweep
        # cancels a frame in work longer than `tracker_commit_timeout_s`.
        self.task_started_at = time.monotonic()
        try:
            await self.session.handle(frame)
        except ProtocolError as exc:
            self.fail(exc.reason)
        except asyncio.CancelledError:
            if not self.timed_out:
                raise
            self.close("commit_timeout")
        except Exception:
            log.exception("tracker frame failed", protocol=self.protocol)
            self.close("internal_error")
        finally:
            self.task = None
        if not self.closed:
            if self.paused:
                assert self.transport is not None
                self.paused = False
                self.transport.resume_reading()
            self._pump()

    # ------------------------------------------------------------------ output, closing

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def fail(self, reason: str) -> None:
        """Close for a counted rejection reason."""
        ingest_metrics.REJECTED.labels(reason).inc()
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        metrics.CLOSED.labels(reason).inc()
        if self.transport is not None:
            self.transport.close()  # what was written still goes out first


class TrackerServer:
    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: IngestPipeline,
        directory: DeviceDirectory,
        redis: Redis,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.directory = directory
        self.max_buffer_bytes = 2 * settings.tracker_max_frame_bytes + 64
        self.commands = CommandRelay(redis, self)
        self._connections: set[Connection] = set()
        self._per_source: Counter[str] = Counter()
        self._by_uid: dict[str, Connection] = {}
        self._refusals_kept_at: dict[str, float] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ports = {"teltonika": self.settings.teltonika_port, "gt06": self.settings.gt06_port}
        for protocol in PROTOCOLS:
            self._servers[protocol] = await loop.create_server(
                lambda protocol=protocol: Connection(self, protocol),
                self.settings.trackers_host,
                ports[protocol],
                reuse_port=True,
                backlog=4096,
            )
            log.info("tracker listener started", protocol=protocol, port=self.port(protocol))
        self._tasks = [
            asyncio.create_task(self._sweep(), name="tracker-sweep"),
            asyncio.create_task(self.commands.listen(), name="tracker-commands"),
            asyncio.create_task(self.commands.deliver(), name="tracker-command-delivery"),
        ]

    def port(self, protocol: str) -> int:
        return self._servers[protocol].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers.values():
            server.close()
        for connection in list(self._connections):
            if connection.task is not None:
                connection.task.cancel()
            connection.close("shutdown")
        await stop_tasks(self._tasks)
        await self.commands.stop()
        for server in self._servers.values():
            await server.wait_closed()

    # ------------------------------------------------------------------ bookkeeping

    def admit(self, connection: Connection) -> str | None:
        """None, or why the connection is refused (the flood limits)."""
        if len(self._connections) >= self.settings.tracker_max_connections:
            return TrackerReason.TOO_MANY_CONNECTIONS
        if self._per_source[connection.source] >= self.settings.tracker_max_connections_per_source:
            return TrackerReason.TOO_MANY_FROM_SOURCE
        self._connections.add(connection)
        self._per_source[connection.source] += 1
        metrics.ACCEPTED.labels(connection.protocol).inc()
        metrics.CONNECTIONS.labels(connection.protocol).inc()
        return None

    def forget(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._per_source[connection.source] -= 1
        if self._per_source[connection.source] <= 0:
            del self._per_source[connection.source]
        metrics.CONNECTIONS.labels(connection.protocol).dec()
        device = connection.session.device
        if device is not None and self._by_uid.get(device.uid) is connection:
            del self._by_uid[device.uid]

    def bind(self, uid: str, connection: Connection) -> None:
        """The connection speaks for this device now (a newer connection replaces an older
        one, which a device that lost its link leaves half-open)."""
        previous = self._by_uid.get(uid)
        self._by_uid[uid] = connection
        if previous is not None and previous is not connection:
            previous.close("replaced")
        self.commands.deliver_soon(uid)

    def keep_refusal(self, uid: str) -> bool:
        """Dead-letter a refused handshake once a minute per IMEI: a flood stays bounded."""
        now = time.monotonic()
        if now - self._refusals_kept_at.get(uid, -60.0) < 60.0:
            return False
        if len(self._refusals_kept_at) > 10_000:
            self._refusals_kept_at.clear()
        self._refusals_kept_at[uid] = now
        return True

    def connection_of(self, uid: str) -> Connection | None:
        return self._by_uid.get(uid)

    def bound_uids(self) -> list[str]:
        return list(self._by_uid)

    def connection_count(self) -> int:
        return len(self._connections)

    async def _sweep(self) -> None:
        settings = self.settings
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self._connections):
                if connection.closed:
                    continue
                if connection.task is not None:
                    if now - connection.task_started_at > settings.tracker_commit_timeout_s:
                        connection.timed_out = True
                        connection.task.cancel()
                    continue
                if connection.session.device is None:
                    if now - connection.opened_at > settings.tracker_handshake_timeout_s:
                        connection.fail(TrackerReason.HANDSHAKE_TIMEOUT)
                elif (
                    connection.partial_since is not None
                    and now - connection.partial_since > settings.tracker_frame_timeout_s
                ):
                    connection.fail(TrackerReason.READ_TIMEOUT)
                elif now - connection.last_read_at > settings.tracker_idle_timeout_s:
                    connection.close("idle")
