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

import json
from collections.abc import Callable

from prometheus_client import Counter
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM
from fleet_common.streams import GroupReader
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
        self._on_alerts = on_alerts
        self.reader = GroupReader(
            redis,
            EVENTS_STREAM,
            EVENTS_GROUP,
            settings.consumer_name,
            self.handle,
            # From the stream's start: events written before the first start are not lost.
            start_id="0",
            count=settings.stream_batch_size,
            block_ms=settings.stream_block_ms,
            claim_idle_ms=int(settings.claim_idle_s * 1000),
            claim_interval_s=settings.claim_interval_s,
            count_deliveries=True,
        )

    async def run(self) -> None:
        """Consume until stopped; errors back off and retry, they never end the loop."""
        await self.reader.run()

    def stop(self) -> None:
        """Ask `run` to return once its current read is over."""
        self.reader.stop()

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
