"""Bring the broker's device clients in line with the database.

- A registered device without a broker client (a wiped or restored broker) gets one again,
  with a new password nobody knows: the device is flagged `credentials_reset_required` so
  that the admin rotates its credentials and re-provisions it.
- A device client whose enabled state or role differs from the database is corrected, and
  so is a device role whose ACLs are not exactly the device's own topics (devices created
  before the ACLs were narrowed had all of `fleet/{uid}/#`).
- A device client (member of the device group) the database does not know, or knows
  as archived, is disabled.
- TCP trackers (Teltonika, GT06) have no broker client: a device client under one's uid is
  an orphan like any other.
- Clients outside the group (the dynsec admin, the location service's ingest client, any
  operator-made client) are never touched.

Runs at service start-up and on every reconnection to the broker, and as the
`fleet-vehicle-reconcile` command.
"""

import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.db import create_engine, create_sessionmaker
from fleet_common.logging import configure_logging, get_logger
from fleet_common.redis import create_redis
from fleet_vehicle.broker.credentials import (
    DeviceBroker,
    device_acls,
    device_role,
    new_password,
)
from fleet_vehicle.broker.dynsec import DynsecClient, DynsecCommandError, acl_set
from fleet_vehicle.config import Settings
from fleet_vehicle.events import publish_device_change
from fleet_vehicle.models import TCP_PROTOCOLS, Device

log = get_logger(__name__)


@dataclass
class ReconcileReport:
    recreated: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    roles_repaired: list[str] = field(default_factory=list)
    orphans_disabled: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(asdict(self).values())


async def reconcile(
    sessionmaker: async_sessionmaker[AsyncSession],
    broker: DeviceBroker,
    redis: Redis | None = None,
) -> ReconcileReport:
    report = ReconcileReport()
    await broker.ensure_device_group()
    clients = {c.username: c for c in await broker.dynsec.list_clients()}
    role_acls = await broker.dynsec.list_role_acls()
    async with sessionmaker() as session:
        devices = (
            await session.scalars(
                select(Device)
                .where(Device.archived_at.is_(None), Device.protocol.not_in(TCP_PROTOCOLS))
                .order_by(Device.uid)
            )
        ).all()
        known = set()
        for device in devices:
            known.add(device.uid)
            client = clients.get(device.uid)
            if client is None:
                try:
                    await broker.create_client(device.uid, new_password(), enabled=device.active)
                except DynsecCommandError as exc:
                    if not exc.already_exists:
                        raise
                    # Another replica re-created it meanwhile and flags the device itself.
                    continue
                device.credentials_reset_required = True
                # Commit each one at once: its password is already unknowable, the flag
                # must not be lost if a later step fails.
                await session.commit()
                report.recreated.append(device.uid)
                if redis is not None:
                    await publish_device_change(redis, "upsert", device.uid, device.id)
                continue
            if broker.group not in client.groups:
                # Not a device client: never take over a service's or an operator's client.
                report.conflicts.append(device.uid)
                continue
            role = device_role(device.uid)
            assigned = role in client.roles
            # Modify only what differs: the broker disconnects a role's clients when it changes.
            if not assigned or role_acls.get(role) != acl_set(device_acls(device.uid)):
                await broker.repair_role(device.uid, assigned=assigned)
                report.roles_repaired.append(device.uid)
            if client.disabled == device.active:
                await broker.set_enabled(device.uid, device.active)
                (report.enabled if device.active else report.disabled).append(device.uid)
    for username, client in clients.items():
        if broker.group in client.groups and username not in known and not client.disabled:
            await broker.set_enabled(username, False)
            report.orphans_disabled.append(username)
    if report.changed:
        log.warning("broker reconciled with the database", **asdict(report))
    else:
        log.info("broker in line with the database", devices=len(known))
    if report.conflicts:
        log.error(
            "device uids held by non-device broker clients; these devices cannot connect",
            uids=report.conflicts,
        )
    return report


async def _run(settings: Settings) -> int:
    dynsec = DynsecClient(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_admin_username,
        settings.mqtt_admin_password.get_secret_value(),
        command_timeout_s=settings.broker_command_timeout_s,
    )
    engine = create_engine(
        settings.database_url, pool_size=2, max_overflow=0, pgbouncer=settings.database_pgbouncer
    )
    redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
    await dynsec.start()
    try:
        if not await dynsec.wait_connected(max(settings.broker_startup_wait_s, 10.0)):
            log.error("cannot reach the MQTT broker", host=settings.mqtt_host)
            return 2
        broker = DeviceBroker(dynsec, settings.device_group)
        report = await reconcile(create_sessionmaker(engine), broker, redis)
        print(json.dumps(asdict(report), indent=2))
        return 0
    finally:
        await dynsec.stop()
        await redis.aclose()
        await engine.dispose()


def main() -> None:
    """`fleet-vehicle-reconcile`: reconcile once and print what changed."""
    settings = Settings()
    configure_logging("vehicle-reconcile", settings.log_level, settings.log_format)
    sys.exit(asyncio.run(_run(settings)))
