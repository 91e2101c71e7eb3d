"""An asyncio client for Mosquitto's dynamic-security control API (`$CONTROL/dynamic-security/v1`).

paho-mqtt runs its network loop in its own thread; each command is published with a fresh
`correlationData` and its future is resolved from the response topic. Commands are
idempotent where the broker lets them be, so callers may retry after a timeout.
"""

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Gauge

from fleet_common.logging import get_logger

log = get_logger(__name__)

# The platform's own broker connections are not devices: the dashboards and alerts subtract
# these (and the location service's) from the broker's client count.
ADMIN_CONNECTED = Gauge(
    "vehicle_broker_admin_connected",
    "Dynsec admin connections to the broker open now (one per process).",
    multiprocess_mode="livesum",
)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"


class BrokerUnavailableError(RuntimeError):
    """The dynsec admin connection is down or the broker did not answer in time."""


class DynsecCommandError(RuntimeError):
    """The broker refused a command (e.g. "Client already exists")."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error

    @property
    def already_exists(self) -> bool:
        return "already exists" in self.error.lower()

    @property
    def not_found(self) -> bool:
        return "not found" in self.error.lower()


@dataclass(frozen=True)
class BrokerClientInfo:
    username: str
    disabled: bool
    groups: frozenset[str]
    roles: frozenset[str]


def acl_set(acls: list[dict]) -> frozenset[tuple[str, str, bool]]:
    """ACL entries compared as the broker keeps them (it adds a priority, ignored here)."""
    return frozenset((acl["acltype"], acl["topic"], bool(acl["allow"])) for acl in acls)


class DynsecClient:
    """One admin connection to the broker, shared by the whole process."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        command_timeout_s: float = 5.0,
        keepalive_s: int = 15,
        reconnect_max_delay_s: int = 5,
    ) -> None:
        self.host = host
        self.port = port
        self.command_timeout_s = command_timeout_s
        self._keepalive_s = keepalive_s
        self._pending: dict[str, asyncio.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = asyncio.Event()
        # One item per (re)connection that is ready for commands: the reconcile trigger.
        self.ready: asyncio.Queue[None] = asyncio.Queue()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleet-vehicle-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_delay_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; paho keeps reconnecting after a loss."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._fail_pending(BrokerUnavailableError("dynsec client stopped"))

    @property
    def connected(self) -> bool:
        return self._client.is_connected() and self._subscribed.is_set()

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("dynsec admin connection refused", reason=str(reason_code))
            return
        ADMIN_CONNECTED.set(1)
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        if all(not rc.is_failure for rc in reason_codes):
            self._call_soon(self._subscribed.set)
            self._call_soon(self.ready.put_nowait, None)
            log.info("dynsec admin connection ready", host=self.host, port=self.port)
        else:
            log.error("dynsec admin may not subscribe to the response topic")

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        ADMIN_CONNECTED.set(0)
        log.warning("dynsec admin connection lost", reason=str(reason_code))
        self._call_soon(self._subscribed.clear)
        self._call_soon(self._fail_pending, BrokerUnavailableError("broker connection lost"))

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynsec response", topic=message.topic)
            return
        for response in responses:
            correlation = response.get("correlationData")
            if isinstance(correlation, str):
                self._call_soon(self._resolve, correlation, response)

    def _call_soon(self, fn, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _resolve(self, correlation: str, response: dict[str, Any]) -> None:
        future = self._pending.pop(correlation, None)
        if future is not None and not future.done():
            future.set_result(response)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    # -- commands --------------------------------------------------------------------------

    async def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Send commands in one message; return each one's `data`, raise on the first error."""
        if not self.connected:
            raise BrokerUnavailableError("not connected to the broker")
        loop = asyncio.get_running_loop()
        futures = []
        payload = []
        for command in commands:
            correlation = uuid.uuid4().hex
            future = loop.create_future()
            self._pending[correlation] = future
            futures.append(future)
            payload.append({**command, "correlationData": correlation})
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": payload}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            for item in payload:
                self._pending.pop(item["correlationData"], None)
            raise BrokerUnavailableError(f"publish to the control topic failed ({info.rc})")
        try:
            async with asyncio.timeout(self.command_timeout_s):
                responses = await asyncio.gather(*futures)
        except TimeoutError as exc:
            for item in payload:
                self._pending.pop(item["correlationData"], None)
            raise BrokerUnavailableError("the broker did not answer in time") from exc
        results = []
        for command, response in zip(commands, responses, strict=True):
            if response.get("error"):
                raise DynsecCommandError(command["command"], str(response["error"]))
            results.append(response.get("data") or {})
        return results

    async def command(self, name: str, **fields: Any) -> dict[str, Any]:
        (data,) = await self.execute({"command": name, **fields})
        return data

    async def ping(self) -> None:
        """A round trip through the plugin: the readiness check of the broker."""
        await self.command("getDefaultACLAccess")

    async def list_role_acls(self) -> dict[str, frozenset[tuple[str, str, bool]]]:
        """Every role's ACL entries, by role name."""
        data = await self.command("listRoles", verbose=True, count=-1, offset=0)
        return {item["rolename"]: acl_set(item.get("acls", [])) for item in data.get("roles", [])}

    async def list_clients(self) -> list[BrokerClientInfo]:
        data = await self.command("listClients", verbose=True, count=-1, offset=0)
        return [
            BrokerClientInfo(
                username=item["username"],
                disabled=bool(item.get("disabled", False)),
                groups=frozenset(g["groupname"] for g in item.get("groups", [])),
                roles=frozenset(r["rolename"] for r in item.get("roles", [])),
            )
            for item in data.get("clients", [])
        ]
