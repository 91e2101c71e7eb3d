"""The vehicle service app."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from fleet_common.app import create_service_app
from fleet_common.health import HealthCheck
from fleet_common.logging import get_logger
from fleet_common.tasks import stop_tasks
from fleet_vehicle.broker.credentials import DeviceBroker
from fleet_vehicle.broker.dynsec import DynsecClient
from fleet_vehicle.broker.reconcile import reconcile
from fleet_vehicle.commands.router import router as commands_router
from fleet_vehicle.commands.service import (
    CommandAnswers,
    Downlink,
    expire_commands,
    send_queued,
)
from fleet_vehicle.commands.trackers import TrackerCommandQueue, TrackerResults
from fleet_vehicle.commands.transport import CommandTransport, ensure_commands_role
from fleet_vehicle.config import Settings
from fleet_vehicle.devices.router import router as devices_router
from fleet_vehicle.devices.service import BrokerAddress
from fleet_vehicle.drivers.router import router as drivers_router
from fleet_vehicle.internal.router import router as internal_router
from fleet_vehicle.maintenance.router import router as maintenance_router
from fleet_vehicle.vehicles.router import router as vehicles_router

log = get_logger(__name__)


async def _reconcile_logged(app: FastAPI) -> None:
    try:
        await reconcile(app.state.sessionmaker, app.state.device_broker, app.state.redis)
    except Exception:
        # The service still serves; the next reconnection or `fleet-vehicle-reconcile` retries.
        log.exception("reconcile failed")


async def _prepare_commands(app: FastAPI) -> None:
    """Give the commands connection its role (a restored broker may lack it), resubscribe."""
    settings = app.state.settings
    try:
        await ensure_commands_role(app.state.dynsec, settings.mqtt_admin_username)
    except Exception:
        log.exception("could not give the commands connection its broker role")
        return
    await app.state.command_transport.resubscribe()


async def _reconcile_on_every_connection(app: FastAPI, dynsec: DynsecClient) -> None:
    """A broker that restarts may come back with other dynsec state (a restore, a wipe)."""
    while True:
        await dynsec.ready.get()
        await _prepare_commands(app)
        await _reconcile_logged(app)


async def _expire_commands_forever(app: FastAPI, interval_s: float) -> None:
    """Expire old commands; send those created while the broker or Redis was unreachable."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with app.state.sessionmaker() as session:
                await expire_commands(session, app.state.redis)
                await send_queued(session, app.state.downlink)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("command expiry sweep failed", error=str(exc))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    dynsec = DynsecClient(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_admin_username,
        settings.mqtt_admin_password.get_secret_value(),
        command_timeout_s=settings.broker_command_timeout_s,
    )

    transport = CommandTransport(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_admin_username,
        settings.mqtt_admin_password.get_secret_value(),
        publish_timeout_s=settings.broker_command_timeout_s,
        share_group=settings.command_share_group,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await dynsec.start()
        await transport.start()
        downlink = Downlink(transport, TrackerCommandQueue(app.state.redis))
        app.state.downlink = downlink
        answers = CommandAnswers(app.state.sessionmaker, app.state.redis, downlink)
        tracker_results = TrackerResults(
            app.state.redis, settings.command_share_group, answers.apply
        )
        if await dynsec.wait_connected(settings.broker_startup_wait_s):
            while not dynsec.ready.empty():
                dynsec.ready.get_nowait()
            await _prepare_commands(app)
            await _reconcile_logged(app)
        else:
            log.warning(
                "MQTT broker unreachable at start-up; reconciling once it connects",
                host=settings.mqtt_host,
                port=settings.mqtt_port,
            )
        tasks = [
            asyncio.create_task(_reconcile_on_every_connection(app, dynsec)),
            asyncio.create_task(transport.consume(answers), name="command-answers"),
            asyncio.create_task(tracker_results.run(), name="tracker-command-results"),
            asyncio.create_task(
                _expire_commands_forever(app, settings.command_expiry_sweep_interval_s),
                name="command-expiry",
            ),
        ]
        try:
            yield
        finally:
            tracker_results.stop()
            await stop_tasks(tasks)
            await transport.stop()
            await dynsec.stop()

    app = create_service_app(
        service="vehicle",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
        health_checks=[HealthCheck("broker", dynsec.ping)],
        title="Fleet Tracker vehicle service",
        description=(
            "Vehicles, drivers, devices and per-device MQTT broker credentials. A deleted "
            "vehicle, driver or device is gone for the API (404, out of the lists); its row "
            "and assignment history are kept, archived, and `include_archived=true` shows them."
        ),
    )
    app.state.dynsec = dynsec
    app.state.command_transport = transport
    app.state.device_broker = DeviceBroker(dynsec, settings.device_group)
    app.state.broker_address = BrokerAddress(
        settings.mqtt_public_host or settings.mqtt_host,
        settings.mqtt_public_port or settings.mqtt_port,
    )
    api = APIRouter(prefix="/api/v1")
    routers = (vehicles_router, maintenance_router, drivers_router, devices_router, commands_router)
    for router in routers:
        api.include_router(router)
    app.include_router(api)
    app.include_router(internal_router)
    return app
