"""The `fleet:events` consumer: at least once, in the `notification` consumer group.

An entry is acknowledged only after its alerts (and their pending deliveries) are
committed; raising alerts is idempotent by event id, so an entry read twice (a crash
between commit and XACK) raises nothing new. Entries a crashed consumer left pending are
claimed with XAUTOCLAIM once idle for `claim_idle_s`.

A poison entry (one whose processing keeps failing, say a value PostgreSQL refuses) is not
reclaimed forever: when an attempt fails and the entry's delivery count in the group has
reached `max_event_attempts`, it is written to the `event_dead_letters` table with its last
error and acknowledged. The dead letter lives in the same database, so while that database
is down nothing is dead-lettered: the entries stay pending and are processed once it is
back. An entry that cannot be read as an event at all is dead-lettered at once (no org).
A failing entry does not hold up the rest of its batch.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from prometheus_client import Counter
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM
from fleet_notification.alerts.raising import IncomingEvent, raise_alerts
from fleet_notification.config import Settings
from fleet_notification.dead_letters import service as dead_letters

log = get_logger(__name__)

EVENTS_CONSUMED = Counter(
    "notification_events_consumed_total", "Stream entries handled, by outcome.", ["outcome"]
)
ALERTS_RAISED = Counter("alerts_raised_total", "Alerts created from events.", ["type"])
EVENTS_DEAD_LETTERED = Counter(
    "notification_events_dead_lettered_total",
    "Stream entries moved to event_dead_letters, by reason (failing, malformed).",
    ["reason"],
)
DEAD_CONSUMER_IDLE_MS = 3_600_000


class MalformedEvent(Exception):
    """The entry cannot be read as an event."""


class EventConsumer:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        sessionmaker: async_sessionmaker[AsyncSession],
        on_alerts: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.sessionmaker = sessionmaker
        self.name = settings.consumer_name
        self._on_alerts = on_alerts
        self._stopping = asyncio.Event()

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: events written before the first start are not lost.
            await self.redis.xgroup_create(EVENTS_STREAM, EVENTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Ask `run` to return once its current read (at most `stream_block_ms`) is over.

        Shutdown does not rely on cancelling a blocking XREADGROUP: the Redis client does
        not always let go of a cancelled read.
        """
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped; errors back off and retry, they never end the loop."""
        last_claim = float("-inf")
        group_ready = False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                if time.monotonic() - last_claim >= self.settings.claim_interval_s:
                    last_claim = time.monotonic()
                    await self.claim_stale()
                response = await self.redis.xreadgroup(
                    EVENTS_GROUP,
                    self.name,
                    {EVENTS_STREAM: ">"},
                    count=self.settings.stream_batch_size,
                    block=self.settings.stream_block_ms,
                )
                for _stream, entries in response or []:
                    await self.handle(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    group_ready = False
                log.warning("event consumer error; retrying", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def claim_stale(self) -> None:
        """Take over entries left pending too long (by a crashed consumer, or failed here)."""
        start = "0-0"
        for _ in range(100):
            result = await self.redis.xautoclaim(
                EVENTS_STREAM,
                EVENTS_GROUP,
                self.name,
                min_idle_time=int(self.settings.claim_idle_s * 1000),
                start_id=start,
                count=self.settings.stream_batch_size,
            )
            start, entries = result[0], result[1]
            if entries:
                log.info("claimed pending events", count=len(entries))
                await self.handle(entries, await self._delivery_counts(entries))
            if start in (b"0-0", "0-0"):
                break
        await self._forget_dead_consumers()

    async def _forget_dead_consumers(self) -> None:
        for consumer in await self.redis.xinfo_consumers(EVENTS_STREAM, EVENTS_GROUP):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if (
                name != self.name
                and consumer["pending"] == 0
                and consumer["idle"] > DEAD_CONSUMER_IDLE_MS
            ):
                await self.redis.xgroup_delconsumer(EVENTS_STREAM, EVENTS_GROUP, name)

    async def _delivery_counts(self, entries: list) -> dict:
        """How often each claimed entry was delivered in the group (XPENDING)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _fields in entries:
                pipe.xpending_range(
                    EVENTS_STREAM, EVENTS_GROUP, min=entry_id, max=entry_id, count=1
                )
            answers = await pipe.execute()
        return {
            entry_id: found[0]["times_delivered"]
            for (entry_id, _fields), found in zip(entries, answers, strict=True)
            if found
        }

    async def handle(self, entries: list, delivered: dict | None = None) -> None:
        """Process entries; `delivered` gives claimed entries' delivery counts (a fresh
        read is the first delivery)."""
        done: list = []
        raised = False
        failure: Exception | None = None
        try:
            for entry_id, fields in entries:
                try:
                    event = self._parse(fields)
                except MalformedEvent as exc:
                    EVENTS_CONSUMED.labels("malformed").inc()
                    log.warning(
                        "dead-lettering a malformed event", entry_id=_text(entry_id), error=str(exc)
                    )
                    await self._dead_letter(entry_id, fields, None, "malformed", 1, str(exc))
                    done.append(entry_id)
                    continue
                try:
                    async with self.sessionmaker() as session:
                        created = await raise_alerts(session, event)
                        await session.commit()
                except Exception as exc:
                    attempts = (delivered or {}).get(entry_id, 1)
                    if attempts < self.settings.max_event_attempts:
                        EVENTS_CONSUMED.labels("failed").inc()
                        log.warning(
                            "event failed; it stays pending and is retried",
                            entry_id=_text(entry_id),
                            attempts=attempts,
                            error=repr(exc)[:500],
                        )
                        failure = exc
                        continue
                    log.error(
                        "dead-lettering an event that keeps failing",
                        entry_id=_text(entry_id),
                        event_id=str(event.id),
                        attempts=attempts,
                        error=repr(exc)[:500],
                    )
                    await self._dead_letter(entry_id, fields, event, "failing", attempts, exc)
                    done.append(entry_id)
                    continue
                done.append(entry_id)
                EVENTS_CONSUMED.labels("processed").inc()
                for _ in created:
                    ALERTS_RAISED.labels(event.type).inc()
                raised = raised or bool(created)
        finally:
            # Entries not done stay pending and are claimed again after claim_idle_s.
            if done:
                await self.redis.xack(EVENTS_STREAM, EVENTS_GROUP, *done)
            if raised:
                self._on_alerts()
        if failure is not None and not done:
            # Nothing in the batch went through (the database down?): back off in run().
            raise failure

    async def _dead_letter(
        self,
        entry_id,
        fields: dict | None,
        event: IncomingEvent | None,
        reason: str,
        attempts: int,
        error: Exception | str,
    ) -> None:
        """Store the entry; raises (so it stays pending) if the database cannot take it."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        async with self.sessionmaker() as session:
            await dead_letters.store(
                session,
                entry_id=_text(entry_id),
                fields=fields,
                org_id=event.org_id if event else None,
                event_id=event.id if event else None,
                event_type=event.type if event else None,
                reason=reason,
                attempts=attempts,
                error=message,
                max_rows=self.settings.dead_letter_max_rows,
            )
            await session.commit()
        EVENTS_DEAD_LETTERED.labels(reason).inc()
        EVENTS_CONSUMED.labels("dead_lettered").inc()

    def _parse(self, fields: dict | None) -> IncomingEvent:
        try:
            if not fields:
                raise ValueError("entry has no fields (trimmed from the stream)")
            return IncomingEvent.model_validate(json.loads(fields[b"event"]))
        except (KeyError, ValueError, ValidationError) as exc:
            raise MalformedEvent(str(exc)[:1000]) from exc


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
