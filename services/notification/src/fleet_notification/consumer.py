"""The `fleet:events` consumer: at least once, in the `notification` consumer group.

An entry is acknowledged only after its alerts (and their pending deliveries) are
committed; raising alerts is idempotent by event id, so an entry read twice (a crash
between commit and XACK) raises nothing new. Entries a crashed consumer left pending are
claimed with XAUTOCLAIM once idle for `claim_idle_s`.
"""

import asyncio
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

log = get_logger(__name__)

EVENTS_CONSUMED = Counter(
    "notification_events_consumed_total", "Stream entries handled, by outcome.", ["outcome"]
)
ALERTS_RAISED = Counter("alerts_raised_total", "Alerts created from events.", ["type"])
DEAD_CONSUMER_IDLE_MS = 3_600_000


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

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: events written before the first start are not lost.
            await self.redis.xgroup_create(EVENTS_STREAM, EVENTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Consume until cancelled; errors back off and retry, they never end the loop."""
        last_claim = float("-inf")
        group_ready = False
        while True:
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
                await asyncio.sleep(1.0)

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
                await self.handle(entries)
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

    async def handle(self, entries: list) -> None:
        done: list = []
        raised = False
        try:
            for entry_id, fields in entries:
                event = self._parse(entry_id, fields)
                if event is None:
                    done.append(entry_id)
                    continue
                async with self.sessionmaker() as session:
                    created = await raise_alerts(session, event)
                    await session.commit()
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

    def _parse(self, entry_id, fields: dict | None) -> IncomingEvent | None:
        try:
            if not fields:
                raise ValueError("entry has no fields (trimmed from the stream)")
            return IncomingEvent.model_validate(json.loads(fields[b"event"]))
        except (KeyError, ValueError, ValidationError) as exc:
            EVENTS_CONSUMED.labels("malformed").inc()
            log.warning("dropping malformed event", entry_id=str(entry_id), error=str(exc)[:300])
            return None
