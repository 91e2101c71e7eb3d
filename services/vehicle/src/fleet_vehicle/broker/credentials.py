"""Per-device broker clients: one dynsec client and one role per device.

Every device client is a member of the device group (`fleet-devices` unless
VEHICLE_DEVICE_GROUP says otherwise). That membership is how reconcile tells device clients
from the broker's service clients (the dynsec admin, the location service's ingest client,
anything an operator adds by hand), which it must never touch; a deployment sharing a broker
with another one gives itself a group of its own so that neither disables the other's
devices. A uid cannot collide with a service client: the broker refuses to create a client
whose username exists, and we answer that with 409.

The ACLs are literal per device (a role `fleet-device:{uid}`), because Mosquitto 2.0.11's
dynamic-security plugin does not substitute `%u`/`%c` in role ACLs (checked against the
broker: a `fleet/%u/#` publish ACL lets nothing through).
"""

import hashlib
import secrets
from dataclasses import dataclass

from fleet_vehicle.broker.dynsec import DynsecClient, DynsecCommandError

DEFAULT_DEVICE_GROUP = "fleet-devices"
DEVICE_ROLE_PREFIX = "fleet-device:"


@dataclass(frozen=True)
class DeviceCredentials:
    username: str
    password: str
    mqtt_host: str
    mqtt_port: int
    http_key: str


def new_password() -> str:
    """256 bits from the OS CSPRNG, URL-safe so that every MQTT client library takes it."""
    return secrets.token_urlsafe(32)


def new_http_key() -> str:
    """192 bits, URL-safe: it goes into an OsmAnd / Traccar Client URL as `&key=…`, typed on
    a phone at worst, so it is shorter than the broker password and needs no escaping."""
    return secrets.token_urlsafe(24)


def hash_http_key(key: str) -> str:
    """What is stored and handed to the location service. A fast hash is enough: the key is
    random (192 bits), so a stolen hash cannot be reversed by guessing."""
    return hashlib.sha256(key.encode()).hexdigest()


def device_role(uid: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{uid}"


def device_acls(uid: str) -> list[dict]:
    return [
        # Exactly the device's own topics: positions, status and answers to its commands.
        {"acltype": "publishClientSend", "topic": f"fleet/{uid}/telemetry", "allow": True},
        {"acltype": "publishClientSend", "topic": f"fleet/{uid}/status", "allow": True},
        {"acltype": "publishClientSend", "topic": f"fleet/{uid}/commands/result", "allow": True},
        {"acltype": "publishClientSend", "topic": f"owntracks/{uid}/#", "allow": True},
        {"acltype": "subscribeLiteral", "topic": f"fleet/{uid}/commands", "allow": True},
    ]


class DeviceBroker:
    """The operations the vehicle service performs on device clients."""

    def __init__(self, dynsec: DynsecClient, group: str = DEFAULT_DEVICE_GROUP) -> None:
        self.dynsec = dynsec
        self.group = group

    async def ensure_device_group(self) -> None:
        try:
            await self.dynsec.command(
                "createGroup",
                groupname=self.group,
                textname="Fleet Tracker devices (managed by the vehicle service)",
            )
        except DynsecCommandError as exc:
            if not exc.already_exists:
                raise

    async def _ensure_role(self, uid: str) -> None:
        """Create the device's role, or reset its ACLs to exactly the device's own topics."""
        try:
            await self.dynsec.command(
                "createRole", rolename=device_role(uid), acls=device_acls(uid)
            )
        except DynsecCommandError as exc:
            if not exc.already_exists:
                raise
            await self.dynsec.command(
                "modifyRole", rolename=device_role(uid), acls=device_acls(uid)
            )

    async def create_client(self, uid: str, password: str, *, enabled: bool = True) -> None:
        """Create the device's client. Raises DynsecCommandError(already_exists) if taken."""
        await self.ensure_device_group()
        await self._ensure_role(uid)
        await self.dynsec.command(
            "createClient",
            username=uid,
            password=password,
            textname="Fleet Tracker device",
            groups=[{"groupname": self.group}],
            roles=[{"rolename": device_role(uid)}],
        )
        if not enabled:
            await self.dynsec.command("disableClient", username=uid)

    async def set_password(self, uid: str, password: str, *, enabled: bool = True) -> None:
        """The old password stops working at once, and connections made with it are kicked
        (a leaked password must not keep a session alive); the device reconnects with the
        new one. A missing client (wiped broker state) is created."""
        try:
            await self.dynsec.command("setClientPassword", username=uid, password=password)
        except DynsecCommandError as exc:
            if not exc.not_found:
                raise
            await self.create_client(uid, password, enabled=enabled)
            return
        # setClientPassword leaves existing sessions up; disabling kicks them.
        await self.dynsec.command("disableClient", username=uid)
        if enabled:
            await self.dynsec.command("enableClient", username=uid)

    async def repair_role(self, uid: str, *, assigned: bool = False) -> None:
        """Re-create the device's role (or reset its ACLs) and give it back to the client
        unless it is still `assigned`."""
        await self._ensure_role(uid)
        if not assigned:
            await self.dynsec.command("addClientRole", username=uid, rolename=device_role(uid))

    async def set_enabled(self, uid: str, enabled: bool) -> None:
        """Disabling also disconnects the device if it is connected."""
        await self.dynsec.command("enableClient" if enabled else "disableClient", username=uid)

    async def delete_client(self, uid: str) -> None:
        """Delete the device's client (the broker kicks its connections) and role."""
        for command, fields in (
            ("deleteClient", {"username": uid}),
            ("deleteRole", {"rolename": device_role(uid)}),
        ):
            try:
                await self.dynsec.command(command, **fields)
            except DynsecCommandError as exc:
                if not exc.not_found:
                    raise
