"""The location service app: telemetry ingest, positions, history, trips and reports."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI

from fleet_common.app import create_service_app
from fleet_common.db import PGBOUNCER_ASYNCPG_ARGS
from fleet_common.health import HealthCheck
from fleet_common.http import create_http_client
from fleet_common.logging import get_logger
from fleet_common.metrics import watch_asyncpg_pool
from fleet_common.tasks import stop_tasks
from fleet_location.config import Settings
from fleet_location.events import create_event_detector
from fleet_location.geofences.router import router as geofences_router
from fleet_location.ingest import partitions
from fleet_location.ingest.broker_stats import BrokerStats
from fleet_location.ingest.devices import DeviceDirectory
from fleet_location.ingest.http_access import IngestRateLimiter
from fleet_location.ingest.live import LiveUpdater
from fleet_location.ingest.mqtt import MqttConsumer
from fleet_location.ingest.pipeline import Inbox, IngestPipeline
from fleet_location.ingest.router import router as ingest_router
from fleet_location.ingest.writer import TelemetryWriter, trim_dead_letters
from fleet_location.positions.model import PositionObserver
from fleet_location.positions.router import router as positions_router
from fleet_location.trackers.server import TrackerServer
from fleet_location.trips import rollups
from fleet_location.trips.rollups import rollup_rules
from fleet_location.trips.router import router as trips_router

log = get_logger(__name__)


async def _warm_up(directory: DeviceDirectory) -> None:
    delay_s = 1.0
    while True:
        try:
            loaded = await directory.warm_up()
            log.info("device cache warmed up", devices=loaded)
            return
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("device cache warm-up failed; lookups go one by one", error=str(exc))
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 60.0)


def _tune_gc(settings: Settings) -> None:
    """Collect less often, and never scan what start-up made.

    At 700 allocations a young collection ran every few packets under load, and the objects
    alive across it (each tracker packet's task, coroutine and waiter, until its commit)
    were promoted and scanned again and again: a third of the listener's CPU per record.
    `make bench-trackers` committed 11.5k Teltonika records/s at 700 (location CPU 80 µs a
    record) and 15.7k at 50,000 (57 µs); the MQTT path, which holds far fewer objects
    across a commit, was unchanged (33-40 µs). The older generations keep their defaults'
    ratios, so cyclic garbage is still found in seconds to minutes."""
    gc.collect()
    gc.freeze()  # modules, settings, the app: alive for good, not worth a scan
    if settings.gc_gen0_threshold:
        _gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(settings.gc_gen0_threshold, gen1, gen2)


async def _maintain_storage(pool: asyncpg.Pool, settings: Settings) -> None:
    """Partitions ahead / retention, and the dead-letter cap, for as long as we run."""
    next_partition_check = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            if loop.time() >= next_partition_check:
                async with pool.acquire() as conn:
                    await partitions.maintain(
                        conn,
                        ahead_days=settings.partition_ahead_days,
                        max_age_days=settings.max_age_days,
                        retention_days=settings.retention_days,
                    )
                next_partition_check = loop.time() + settings.partition_check_interval_s
            await trim_dead_letters(pool, settings.dead_letter_max_rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("storage maintenance failed; retrying", error=str(exc))
        # Until the first partition check succeeds, retry it soon.
        await asyncio.sleep(settings.dead_letter_trim_interval_s if next_partition_check else 5.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Told about every committed batch and status change (see PositionObserver).
    observers: list[PositionObserver] = []

    async def check_mqtt() -> None:
        consumer: MqttConsumer | None = getattr(app.state, "mqtt", None)
        if consumer is not None:
            await consumer.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = settings.asyncpg_dsn
        pooler = PGBOUNCER_ASYNCPG_ARGS if settings.database_pgbouncer else {}
        write_pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=2, command_timeout=60, **pooler
        )
        read_pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=8, command_timeout=60, **pooler
        )
        watch_asyncpg_pool(app, "location", "ingest", write_pool)
        watch_asyncpg_pool(app, "location", "read", read_pool)
        http = create_http_client(timeout=httpx.Timeout(5.0, connect=2.0))
        directory = DeviceDirectory(
            vehicle_url=settings.vehicle_url,
            internal_token=settings.internal_token.get_secret_value(),
            redis=app.state.redis,
            http=http,
            ttl_s=settings.device_cache_ttl_s,
            negative_ttl_s=settings.device_negative_ttl_s,
        )
        pipeline = IngestPipeline(
            settings,
            writer=TelemetryWriter(write_pool),
            live=LiveUpdater(app.state.redis),
            directory=directory,
            observers=app.state.position_observers,
        )
        consumer: MqttConsumer | None = None
        if settings.mqtt_enabled:
            pipeline.inbox = Inbox()
            consumer = MqttConsumer(settings, pipeline.inbox)
            pipeline.acker = consumer.ack_many
            pipeline.reader = consumer
        app.state.ingest = pipeline
        app.state.ingest_limiter = IngestRateLimiter(
            app.state.redis,
            per_address=settings.http_ingest_per_address,
            per_device=settings.http_ingest_per_device,
            window_s=settings.http_ingest_window_s,
        )
        app.state.read_pool = read_pool
        app.state.devices = directory
        app.state.mqtt = consumer
        detector = create_event_detector(
            settings,
            app.state.redis,
            app.state.sessionmaker,
            directory.speed_limit_for,
            directory.cached_device,
        )
        app.state.geofence_index = detector.geofences
        observers.append(detector)
        detector.start()
        background = [
            asyncio.create_task(directory.listen(), name="device-invalidation"),
            asyncio.create_task(_warm_up(directory), name="device-warm-up"),
            asyncio.create_task(_maintain_storage(write_pool, settings), name="storage"),
            asyncio.create_task(
                rollups.maintain(
                    write_pool,
                    rollup_rules(settings),
                    interval_s=settings.rollup_interval_s,
                    keep_days=settings.rollup_retention_days,
                ),
                name="rollups",
            ),
        ]
        pipeline.start()
        broker_stats = BrokerStats(settings) if settings.mqtt_enabled else None
        if consumer is not None:
            consumer.start()
        if broker_stats is not None:
            broker_stats.start()
        trackers: TrackerServer | None = None
        if settings.trackers_enabled:
            trackers = TrackerServer(
                settings, pipeline=pipeline, directory=directory, redis=app.state.redis
            )
            await trackers.start()
        app.state.trackers = trackers
        _tune_gc(settings)
        try:
            yield
        finally:
            if broker_stats is not None:
                await asyncio.to_thread(broker_stats.stop)
            if trackers is not None:
                await trackers.stop()
            drained = False
            if consumer is not None and settings.mqtt_leave_on_stop:
                drained = await consumer.leave(
                    settings.mqtt_drain_timeout_s, settings.mqtt_drain_quiet_s
                )
            await pipeline.stop()
            if consumer is not None:
                await consumer.stop(end_session=drained)
            await detector.stop()
            await stop_tasks(background)
            await http.aclose()
            await write_pool.close()
            await read_pool.close()

    app = create_service_app(
        service="location",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
        health_checks=[HealthCheck("mqtt", check_mqtt)],
        # Positions are still stored without Redis: readiness turns degraded, not down.
        redis_critical=False,
        title="Fleet Tracker location service",
    )
    app.state.position_observers = observers
    app.include_router(ingest_router)
    app.include_router(positions_router, prefix="/api/v1")
    app.include_router(trips_router, prefix="/api/v1")
    app.include_router(geofences_router, prefix="/api/v1")
    return app
