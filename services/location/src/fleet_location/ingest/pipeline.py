"""The ingest pipeline: messages in, batches committed, then Redis, observers and acks.

    MQTT reads (on the loop) --Inbox--> intake (parse, validate, map device) --> open Batch
    writer task: take the batch when full or due, commit it (retrying until it commits)
    post-commit task, in commit order: Redis latest/geo/live, observers, MQTT acks

While too many positions wait for their commit, the intake stops the MQTT consumer
reading (`Reader.pause_reading`): the broker then holds the rest (ReceiveMaximum, TCP).

A message is acknowledged only after the transaction holding its positions (or its
dead-letter record) has committed, so a crash anywhere before that means the broker
redelivers it, and `(device_id, recorded_at)` uniqueness makes the replay harmless.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol
from uuid import UUID

from fleet_common.logging import get_logger
from fleet_common.tasks import stop_tasks
from fleet_location.config import Settings
from fleet_location.ingest import metrics
from fleet_location.ingest.devices import MISSING, DeviceDirectory
from fleet_location.ingest.http_access import IngestRateLimiter, check_key
from fleet_location.ingest.live import LiveUpdater
from fleet_location.ingest.parsing import (
    DeviceInfo,
    HttpFix,
    Limits,
    Reason,
    Rejected,
    build_position,
    parse_mqtt_telemetry,
)
from fleet_location.ingest.writer import RejectionRecord, TelemetryWriter, WriteResult
from fleet_location.positions.model import Position, PositionObserver

log = get_logger(__name__)

_RECORDED_AT = attrgetter("recorded_at")
Acker = Callable[[list[tuple[int, int]]], None]
_REJECTED = {reason: metrics.REJECTED.labels(reason) for reason in Reason.ALL}
_RECEIVED_MQTT = metrics.RECEIVED.labels("mqtt")
_RECEIVED_HTTP = metrics.RECEIVED.labels("http")
_RECEIVED_TRACKER: dict[str, Any] = {}  # by protocol, bound on first use
_FLOOD_REASONS = frozenset(
    (Reason.UNKNOWN_DEVICE, Reason.MISSING_KEY, Reason.INVALID_KEY, Reason.RATE_LIMITED)
)


@dataclass(slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Inbox:
    """Messages read from the broker, waiting for the intake; used on the event loop only."""

    def __init__(self) -> None:
        self._items: deque[InboundMessage] = deque()
        self._event = asyncio.Event()

    def put(self, item: InboundMessage) -> None:
        self._items.append(item)
        self._event.set()

    def put_many(self, items: list[InboundMessage]) -> None:
        if items:
            self._items.extend(items)
            self._event.set()

    async def take(self, max_items: int) -> list[InboundMessage]:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        items = []
        popleft = self._items.popleft
        while self._items and len(items) < max_items:
            items.append(popleft())
        return items

    def __len__(self) -> int:
        return len(self._items)


class Reader(Protocol):
    """Where the inbox's messages come from: told to stop reading while we are saturated."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@dataclass(slots=True)
class StatusChange:
    device: DeviceInfo
    online: bool
    at: datetime


@dataclass(slots=True)
class Batch:
    positions: list[Position] = field(default_factory=list)
    rejections: list[RejectionRecord] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)
    opened_at: float = 0.0

    def empty(self) -> bool:
        return not (self.positions or self.rejections or self.acks or self.statuses)


class IngestPipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        writer: TelemetryWriter,
        live: LiveUpdater,
        directory: DeviceDirectory,
        observers: list[PositionObserver],
    ) -> None:
        self.settings = settings
        self.limits = Limits(
            max_future=timedelta(seconds=settings.max_future_s),
            max_age=timedelta(days=settings.max_age_days),
            max_positions_per_message=settings.max_positions_per_message,
        )
        self.writer = writer
        self.live = live
        self.directory = directory
        self.observers = observers
        self.acker: Acker | None = None
        self.inbox: Inbox | None = None
        self.reader: Reader | None = None
        self._open = Batch()
        self._full = asyncio.Event()
        self._has_items = asyncio.Event()
        self._drained = asyncio.Event()
        self._pending = 0
        self._committed: asyncio.Queue[tuple[Batch, WriteResult]] = asyncio.Queue(maxsize=4)
        self._redis_retry_at = 0.0
        self._flood_kept_at: dict[tuple[str, str], float] = {}
        self.last_commit_error: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._intake: asyncio.Task | None = None
        self._post_busy = False

    # ---------------------------------------------------------------- tasks

    def start(self) -> list[asyncio.Task]:
        """The writer and post-commit tasks, and the MQTT intake when an inbox is set."""
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="ingest-writer"),
            asyncio.create_task(self._post_commit_loop(), name="ingest-post-commit"),
        ]
        if self.inbox is not None:
            self._intake = asyncio.create_task(self._intake_loop(), name="ingest-intake")
            self._tasks.append(self._intake)
        return self._tasks

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking messages, commit and acknowledge what is in hand, then stop."""
        if self._intake is not None:
            self._intake.cancel()
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline and (
            not self._open.empty() or self._pending or self._committed.qsize() or self._post_busy
        ):
            self._full.set()
            await asyncio.sleep(0.02)
        await stop_tasks(self._tasks)

    async def _intake_loop(self) -> None:
        assert self.inbox is not None
        while True:
            if self._pending >= self.settings.max_pending_positions:
                await self._wait_drained()
            # Small takes, and a yield after each: while the inbox holds messages neither
            # `take` nor parsing awaits anything, so without the yield the intake would empty
            # the whole inbox (up to the receive window) before the writer and acks got a turn.
            items = await self.inbox.take(500)
            try:
                await self.handle_mqtt(items)
            except Exception:
                # Never lose the consumer: the messages stay unacknowledged and return.
                log.exception("intake failed; messages will be redelivered on reconnect")
            await asyncio.sleep(0)

    async def _wait_drained(self) -> None:
        """Saturated: read nothing more from the broker until commits bring us under."""
        reader = self.reader
        if reader is not None:
            reader.pause_reading()
        try:
            while self._pending >= self.settings.max_pending_positions:
                self._drained.clear()
                await self._drained.wait()
        finally:
            if reader is not None:
                reader.resume_reading()

    # ---------------------------------------------------------------- MQTT messages

    async def handle_mqtt(self, items: list[InboundMessage]) -> None:
        directory = self.directory
        uids = [_topic_uid(item.topic) for item in items]
        unresolved = {uid for uid in uids if uid is not None and directory.lookup(uid) is MISSING}
        unavailable: set[str] = set()
        if unresolved:
            pending = list(unresolved)
            outcomes = await asyncio.gather(
                *(directory.resolve(uid) for uid in pending), return_exceptions=True
            )
            for uid, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    unavailable.add(uid)
        now = datetime.now(UTC)
        held: list[InboundMessage] = []
        # Everything these messages give goes into the open batch in one step.
        taken = Batch()
        for item, uid in zip(items, uids, strict=True):
            if uid is not None and uid in unavailable:
                held.append(item)
                continue
            self._handle_one(item, uid, now, taken)
        _RECEIVED_MQTT.inc(len(taken.positions))
        self._add(
            positions=taken.positions,
            rejections=taken.rejections,
            acks=taken.acks,
            statuses=taken.statuses,
        )
        if held:
            # The vehicle service is unreachable: keep these (unacknowledged) and try again.
            loop = asyncio.get_running_loop()
            inbox = self.inbox
            if inbox is not None:
                loop.call_later(2.0, inbox.put_many, held)

    def _handle_one(self, item: InboundMessage, uid: str | None, now: datetime, out: Batch) -> None:
        """Parse one message into `out`: its positions or rejections, and its ack."""
        out.acks.append((item.mid, item.qos))
        if uid is None:
            metrics.IGNORED.labels("topic").inc()
            return
        device = self.directory.lookup(uid)
        kind = _topic_kind(item.topic)
        try:
            if device is None or device is MISSING:
                raise Rejected(Reason.UNKNOWN_DEVICE, "no device has this uid")
            if not device.active:
                raise Rejected(Reason.INACTIVE_DEVICE, "the device is deactivated")
            if len(item.payload) > self.settings.max_payload_bytes:
                raise Rejected(Reason.TOO_LARGE, "payload is larger than allowed")
            if kind == "status":
                if not item.payload:  # a retained status being cleared
                    metrics.IGNORED.labels("status").inc()
                    return
                out.statuses.append(StatusChange(device, _status(item.payload), now))
                return
            parsed = parse_mqtt_telemetry(
                item.payload, device, now, self.limits, owntracks=kind == "owntracks"
            )
        except Rejected as exc:
            org = device.org_id if isinstance(device, DeviceInfo) else None
            if self._keep(exc.reason, uid):
                out.rejections.append(self._record("mqtt", exc, uid, org, item))
            else:
                _REJECTED[exc.reason].inc()
            return
        if parsed.rejections:
            out.rejections.extend(
                self._record("mqtt", exc, uid, device.org_id, item, raw)
                for exc, raw in parsed.rejections
            )
        elif not parsed.positions:
            metrics.IGNORED.labels(kind).inc()
        out.positions.extend(parsed.positions)

    def _keep(self, reason: str, uid: str) -> bool:
        """Refusals a flood repeats (unknown devices, bad keys, rate limits) are dead-lettered
        once a minute per reason and uid (every one is counted): the store stays bounded."""
        if reason not in _FLOOD_REASONS:
            return True
        now = time.monotonic()
        last = self._flood_kept_at.get((reason, uid))
        if last is not None and now - last < 60.0:
            return False
        if len(self._flood_kept_at) > 10_000:
            self._flood_kept_at.clear()
        self._flood_kept_at[(reason, uid)] = now
        return True

    @staticmethod
    def _record(
        source: str,
        exc: Rejected,
        uid: str | None,
        org_id: UUID | None,
        item: Any,
        raw: bytes | None = None,
    ) -> RejectionRecord:
        _REJECTED[exc.reason].inc()
        payload = raw if raw is not None else getattr(item, "payload", b"")
        return RejectionRecord(source, exc.reason, uid, org_id, exc.detail, payload)

    # ---------------------------------------------------------------- HTTP

    async def ingest_http(
        self, fixes: list[HttpFix], raw: bytes, key: str | None, limiter: IngestRateLimiter
    ) -> int:
        """Store OsmAnd / Traccar Client positions; returns once they are committed.

        Raises `Rejected` (after dead-lettering it) when nothing in the request is valid or
        the request is not the device's own (`key`) or over its device's rate limit,
        `DirectoryUnavailable` when the device cannot be looked up, `TimeoutError` when the
        database does not commit in time.
        """
        uid = fixes[0].uid
        device = self.directory.lookup(uid)
        if device is MISSING:
            device = await self.directory.resolve(uid)
        if device is not None:
            # The key first, active or not: only the key's holder learns that a device is
            # deactivated.
            try:
                check_key(device, key)
                if device.active:
                    await limiter.admit_device(device)
            except Rejected as exc:
                self._reject_request(exc, uid, device.org_id, raw)
                raise
        now = datetime.now(UTC)
        positions: list[Position] = []
        rejections: list[RejectionRecord] = []
        first_error: Rejected | None = None
        for fix in fixes:
            try:
                if device is None:
                    raise Rejected(Reason.UNKNOWN_DEVICE, "no device has this id")
                if not device.active:
                    raise Rejected(Reason.INACTIVE_DEVICE, "the device is deactivated")
                positions.append(build_position(device, now, self.limits, **fix.fields))
            except Rejected as exc:
                first_error = first_error or exc
                org = device.org_id if device is not None else None
                if self._keep(exc.reason, uid):
                    rejections.append(self._record("osmand", exc, uid, org, None, raw))
                else:
                    _REJECTED[exc.reason].inc()
        if self._pending >= self.settings.max_pending_positions and positions:
            raise TimeoutError("ingest is saturated")
        waiter = asyncio.get_running_loop().create_future() if positions else None
        self._add(positions=positions, rejections=rejections, waiter=waiter)
        if waiter is None:
            assert first_error is not None
            raise first_error
        _RECEIVED_HTTP.inc(len(positions))
        async with asyncio.timeout(self.settings.http_commit_timeout_s):
            await asyncio.shield(waiter)
        return len(positions)

    def reject_http(self, exc: Rejected, raw: bytes) -> None:
        """Count and dead-letter an HTTP request refused before its device was known."""
        self._reject_request(exc, None, None, raw)

    def _reject_request(
        self, exc: Rejected, uid: str | None, org_id: UUID | None, raw: bytes
    ) -> None:
        if self._keep(exc.reason, uid or ""):
            self._add(rejections=[self._record("osmand", exc, uid, org_id, None, raw)])
        else:
            _REJECTED[exc.reason].inc()

    # ---------------------------------------------------------------- TCP trackers

    async def ingest_tracker(
        self, source: str, positions: list[Position], rejections: list[RejectionRecord]
    ) -> None:
        """Store a tracker packet's positions (and dead-letter its refused records); returns
        once they are committed, which is when the tracker may be answered (trackers/)."""
        while self._pending >= self.settings.max_pending_positions:
            self._drained.clear()
            await self._drained.wait()
        waiter = asyncio.get_running_loop().create_future()
        self._add(positions=positions, rejections=rejections, waiter=waiter)
        received = _RECEIVED_TRACKER.get(source)
        if received is None:
            received = _RECEIVED_TRACKER[source] = metrics.RECEIVED.labels(source)
        received.inc(len(positions))
        # Not shielded: the waiter is this call's alone, and the writer skips one that was
        # cancelled with its caller (the batch is committed all the same).
        await waiter

    def keep_rejections(self, rejections: list[RejectionRecord]) -> None:
        """Dead-letter refused tracker bytes with the next batch (nothing waits for it)."""
        self._add(rejections=rejections)

    # ---------------------------------------------------------------- batching

    def _add(
        self,
        *,
        positions: list[Position] | None = None,
        rejections: list[RejectionRecord] | None = None,
        acks: list[tuple[int, int]] | None = None,
        statuses: list[StatusChange] | None = None,
        waiter: asyncio.Future | None = None,
    ) -> None:
        batch = self._open
        if batch.empty() and not batch.waiters:
            batch.opened_at = time.monotonic()
        if positions:
            batch.positions.extend(positions)
            self._pending += len(positions)
            metrics.PENDING.set(self._pending)
        if rejections:
            batch.rejections.extend(rejections)
        if acks:
            batch.acks.extend(acks)
        if statuses:
            batch.statuses.extend(statuses)
        if waiter is not None:
            batch.waiters.append(waiter)
        self._has_items.set()
        if len(batch.positions) >= self.settings.batch_max_positions:
            self._full.set()

    async def _take_batch(self) -> Batch:
        while self._open.empty():
            self._has_items.clear()
            await self._has_items.wait()
        deadline = self._open.opened_at + self.settings.batch_max_delay_ms / 1000.0
        remaining = deadline - time.monotonic()
        if remaining > 0 and len(self._open.positions) < self.settings.batch_max_positions:
            self._full.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._full.wait()
            except TimeoutError:
                pass
        batch, self._open = self._open, Batch()
        return batch

    async def _write_loop(self) -> None:
        while True:
            batch = await self._take_batch()
            result = await self._commit(batch)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            await self._committed.put((batch, result))

    async def _commit(self, batch: Batch) -> WriteResult:
        delay_s = 0.1
        while True:
            started = time.perf_counter()
            try:
                result = await self.writer.write(batch.positions, batch.rejections)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.DB_ERRORS.inc()
                self.last_commit_error = f"{type(exc).__name__}: {exc}"
                log.warning("batch write failed; retrying", error=self.last_commit_error)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            self.last_commit_error = None
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            if batch.positions:
                metrics.RECEIVE_TO_COMMIT_SECONDS.observe(time.monotonic() - batch.opened_at)
            metrics.BATCH_SIZE.observe(len(batch.positions))
            metrics.STORED.inc(result.new)
            metrics.DUPLICATES.inc(result.duplicates)
            for _record in result.failed:
                _REJECTED[Reason.STORAGE_ERROR].inc()
            self._pending -= len(batch.positions)
            metrics.PENDING.set(self._pending)
            self._drained.set()
            return result

    # ---------------------------------------------------------------- after commit

    async def _post_commit_loop(self) -> None:
        while True:
            batch, result = await self._committed.get()
            self._post_busy = True
            try:
                await self._after_commit(batch, result)
            except Exception:
                log.exception("post-commit step failed")
            if self.acker is not None and batch.acks:
                try:
                    self.acker([ack for ack in batch.acks if ack[1] > 0])
                except Exception:
                    # Unacknowledged messages come back after a reconnect; stored once.
                    log.exception("acknowledging a batch failed")
            self._post_busy = False

    async def _after_commit(self, batch: Batch, result: WriteResult) -> None:
        # Stored, not only new: a redelivered message's positions may never have reached
        # Redis and the observers (see writer.py); both take a position they have seen as
        # a no-op.
        stored = result.stored
        if stored:
            # Time order, for Redis and for the observers: each device's positions in order
            # (one C-compared key to sort on).
            ordered = sorted(stored, key=_RECORDED_AT)
            await self._update_redis(ordered)
            for observer in list(self.observers):
                try:
                    await observer.positions_committed(ordered)
                except Exception:
                    metrics.OBSERVER_ERRORS.labels(type(observer).__name__).inc()
                    log.exception("position observer failed", observer=type(observer).__name__)
        for change in batch.statuses:
            for observer in list(self.observers):
                try:
                    await observer.device_status(
                        device_id=change.device.device_id,
                        vehicle_id=change.device.vehicle_id,
                        org_id=change.device.org_id,
                        online=change.online,
                        at=change.at,
                    )
                except Exception:
                    metrics.OBSERVER_ERRORS.labels(type(observer).__name__).inc()
                    log.exception("status observer failed", observer=type(observer).__name__)

    async def _update_redis(self, positions: list[Position]) -> None:
        # While Redis is down, try at most once a second: the next newer position repairs
        # the latest hash, and the database already holds everything.
        if time.monotonic() < self._redis_retry_at:
            metrics.REDIS_ERRORS.inc()
            return
        try:
            await self.live.publish(positions)
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            self._redis_retry_at = time.monotonic() + 1.0
            log.warning("redis update failed", error=str(exc))


def _topic_uid(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) >= 3 and parts[0] in ("fleet", "owntracks") and parts[1]:
        return parts[1]
    return None


def _topic_kind(topic: str) -> str:
    if topic.startswith("owntracks/"):
        return "owntracks"
    return "status" if topic.endswith("/status") else "telemetry"


def _status(payload: bytes) -> bool:
    text = payload.decode("utf-8", errors="replace").strip().strip('"').lower()
    if text in ("online", "offline"):
        return text == "online"
    raise Rejected(Reason.INVALID_PAYLOAD, "status must be 'online' or 'offline'")
