"""The notification service app: the API, the fleet:events consumer and the delivery worker."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from fleet_common.app import create_service_app
from fleet_common.metrics import add_scrape_hook
from fleet_common.tasks import stop_tasks
from fleet_notification.alerts.router import router as alerts_router
from fleet_notification.config import Settings
from fleet_notification.consumer import EVENTS_DEAD_LETTERED, EventConsumer
from fleet_notification.dead_letters.router import internal_router as dead_letters_internal
from fleet_notification.dead_letters.router import router as dead_letters_router
from fleet_notification.delivery.email import EmailChannel
from fleet_notification.delivery.in_app import InAppChannel
from fleet_notification.delivery.push import PushChannel
from fleet_notification.delivery.targets import webhook_client
from fleet_notification.delivery.webhook import WebhookChannel
from fleet_notification.delivery.worker import DELIVERY_ATTEMPTS, DeliveryWorker
from fleet_notification.push_tokens.router import router as push_tokens_router
from fleet_notification.rules.router import router as rules_router
from fleet_notification.stream_metrics import stream_hook


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Webhooks go to customers' servers: pinned to checked addresses, no redirects, no proxy.
    webhook_http = webhook_client(settings)
    push = PushChannel(settings, app.state.sessionmaker)
    worker = DeliveryWorker(
        settings,
        app.state.sessionmaker,
        {
            "in_app": InAppChannel(app.state.redis),
            "webhook": WebhookChannel(settings, webhook_http),
            "email": EmailChannel(settings),
            "push": push,
        },
    )
    consumer = EventConsumer(settings, app.state.redis, app.state.sessionmaker, worker.kick)
    # Every series exists from the start, so an alert on a failure rate has a baseline.
    for channel in worker.channels:
        for result in ("delivered", "retry", "failed"):
            DELIVERY_ATTEMPTS.labels(channel, result)
    for reason in ("failing", "malformed"):
        EVENTS_DEAD_LETTERED.labels(reason)
    app.state.delivery_worker = worker
    app.state.event_consumer = consumer
    tasks = [
        asyncio.create_task(worker.run(), name="delivery-worker"),
        asyncio.create_task(consumer.run(), name="event-consumer"),
    ]
    try:
        yield
    finally:
        consumer.stop()
        # The consumer ends after its current read; the worker stops on cancellation.
        tasks[0].cancel()
        await asyncio.wait(tasks, timeout=settings.stream_block_ms / 1000 + 5)
        await stop_tasks(tasks)
        await webhook_http.aclose()
        await push.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        service="notification",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
        title="Fleet Tracker notification service",
    )
    api = APIRouter(prefix="/api/v1")
    for router in (rules_router, alerts_router, push_tokens_router, dead_letters_router):
        api.include_router(router)
    add_scrape_hook(app, stream_hook(app.state.redis))
    app.include_router(api)
    app.include_router(dead_letters_internal)
    return app
