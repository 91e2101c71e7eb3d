"""The delivery worker: claims pending deliveries from the database and runs them concurrently.

Deliveries are rows, not in-memory tasks, so that a crash loses none (a claimed row's lease
runs out and any replica takes it again) and the stream consumer only inserts rows and moves
on. Each delivery is its own task with a timeout: a slow SMTP server or webhook never holds
up another channel, another alert or the stream.
"""

import asyncio
import random
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_notification.alerts.service import alert_json
from fleet_notification.config import Settings
from fleet_notification.delivery.channels import Channel, DeliveryError
from fleet_notification.models import Alert, Delivery

log = get_logger(__name__)
DELIVERY_ATTEMPTS = Counter(
    "alert_delivery_attempts_total",
    "Delivery attempts, by channel and result.",
    ["channel", "result"],
)


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: dict[str, Channel],
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.channels = channels
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task] = set()

    def kick(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._wake.set()

    def backoff_s(self, attempts: int) -> float:
        base = self.settings.delivery_retry_base_s * 2 ** (attempts - 1)
        return min(self.settings.delivery_retry_max_s, base) * random.uniform(0.8, 1.2)

    async def run(self) -> None:
        try:
            while True:
                claimed: list[tuple[Delivery, Alert]] = []
                free = self.settings.delivery_concurrency - len(self._running)
                if free > 0:
                    try:
                        claimed = await self.claim(free)
                    except Exception as exc:
                        log.warning("claiming deliveries failed", error=repr(exc))
                for delivery, alert in claimed:
                    task = asyncio.create_task(self.deliver(delivery, alert))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                if len(claimed) < free:
                    try:
                        async with asyncio.timeout(self.settings.delivery_poll_interval_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    self._wake.clear()
                elif free <= 0:
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def claim(self, limit: int) -> list[tuple[Delivery, Alert]]:
        lease = timedelta(seconds=self.settings.delivery_lease_s)
        async with self.sessionmaker() as session, session.begin():
            deliveries = list(
                await session.scalars(
                    select(Delivery)
                    .where(Delivery.status == "pending", Delivery.next_attempt_at <= func.now())
                    .order_by(Delivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not deliveries:
                return []
            for delivery in deliveries:
                delivery.attempts += 1
            ids = [d.id for d in deliveries]
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(next_attempt_at=func.now() + lease, updated_at=func.now())
            )
            alerts = {
                a.id: a
                for a in await session.scalars(
                    select(Alert).where(Alert.id.in_({d.alert_id for d in deliveries}))
                )
            }
        return [(d, alerts[d.alert_id]) for d in deliveries]

    async def deliver(self, delivery: Delivery, alert: Alert) -> None:
        values: dict[str, Any]
        try:
            channel = self.channels[delivery.channel]
            async with asyncio.timeout(self.settings.delivery_lease_s * 0.8):
                outcome = await channel.send(delivery, alert_json(alert))
            values = {
                "status": "delivered",
                "delivered_at": func.now(),
                "last_error": None,
                "outcome": outcome,
            }
            result = "delivered"
        except asyncio.CancelledError:
            raise  # shutting down: the lease runs out and the row is retried
        except Exception as exc:
            permanent = isinstance(exc, DeliveryError) and exc.permanent
            outcome = exc.outcome if isinstance(exc, DeliveryError) else None
            message = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}"
            if permanent or delivery.attempts >= self.settings.delivery_max_attempts:
                values = {"status": "failed", "last_error": message}
                result = "failed"
            else:
                retry_in = timedelta(seconds=self.backoff_s(delivery.attempts))
                values = {"next_attempt_at": func.now() + retry_in, "last_error": message}
                result = "retry"
            if outcome is not None:
                values["outcome"] = outcome
            log.info(
                "delivery attempt failed",
                channel=delivery.channel,
                delivery_id=str(delivery.id),
                attempts=delivery.attempts,
                result=result,
                error=message,
            )
        DELIVERY_ATTEMPTS.labels(delivery.channel, result).inc()
        try:
            async with self.sessionmaker() as session:
                # Only if no other worker took the row over after our lease ran out.
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery.id, Delivery.attempts == delivery.attempts)
                    .values(updated_at=func.now(), **values)
                )
                await session.commit()
        except Exception as exc:
            log.warning("recording a delivery failed", error=repr(exc))
        self.kick()
