"""The vehicle service's MQTT connection for downlink commands.

It publishes commands to `fleet/{uid}/commands` (QoS 1) and takes, through shared
subscriptions (so that vehicle replicas split them and each message is handled once),
devices' answers on `fleet/{uid}/commands/result` and their `fleet/{uid}/status` (a device
coming online gets its open commands again: a device without a persistent session misses
what was published while it was away, and a retained message would hold only one command).

It logs in as the broker admin (the client that already manages device credentials) and
gives that client, through the dynamic-security API, a role allowed to publish commands:
the plugin's default ACLs deny every publish that no role allows.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet_common.logging import get_logger
from fleet_vehicle.broker.dynsec import DynsecClient, DynsecCommandError, acl_set

log = get_logger(__name__)

COMMANDS_ROLE = "fleet-commands"
RESULT_FILTER = "fleet/+/commands/result"
STATUS_FILTER = "fleet/+/status"
# Bounds the queue between paho's network thread and the handler (a flood waits in TCP).
MAX_PENDING_MESSAGES = 10_000

MessageHandler = Callable[[str, bytes], Awaitable[None]]


def command_topic(uid: str) -> str:
    return f"fleet/{uid}/commands"


class CommandsUnavailableError(RuntimeError):
    """Not connected to the broker, or the broker did not take the command in time."""


COMMANDS_ACLS = [
    {"acltype": "publishClientSend", "topic": "fleet/+/commands", "allow": True},
    {"acltype": "subscribePattern", "topic": RESULT_FILTER, "allow": True},
    {"acltype": "subscribePattern", "topic": STATUS_FILTER, "allow": True},
]


async def ensure_commands_role(dynsec: DynsecClient, username: str) -> None:
    """Let the service's client publish commands (idempotent; run on every connection).

    Changes only what is missing: Mosquitto disconnects every client of a role or client that
    is modified, this service's own connections included, so an unconditional update on each
    connection would cut the connection it was made on.
    """
    try:
        role = (await dynsec.command("getRole", rolename=COMMANDS_ROLE))["role"]
    except DynsecCommandError:
        await dynsec.command("createRole", rolename=COMMANDS_ROLE, acls=COMMANDS_ACLS)
    else:
        if acl_set(role.get("acls", [])) != acl_set(COMMANDS_ACLS):
            await dynsec.command("modifyRole", rolename=COMMANDS_ROLE, acls=COMMANDS_ACLS)
    client = (await dynsec.command("getClient", username=username))["client"]
    if COMMANDS_ROLE not in {r["rolename"] for r in client.get("roles", [])}:
        await dynsec.command("addClientRole", username=username, rolename=COMMANDS_ROLE)


class CommandTransport:
    """One MQTT connection: publish commands, hand device answers to `on_message`."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        publish_timeout_s: float = 5.0,
        share_group: str = "vehicle",
    ) -> None:
        self.publish_timeout_s = publish_timeout_s
        self._share_group = share_group
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_PENDING_MESSAGES)
        self._subscribed = asyncio.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleet-vehicle-commands-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self._host, self._port, keepalive=15)
        self._client.loop_start()

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    @property
    def connected(self) -> bool:
        return self._client.is_connected() and self._subscribed.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def resubscribe(self) -> None:
        """Subscribe again (after the role that allows it was given to this client)."""
        if self._client.is_connected():
            self._subscribe(self._client)

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _subscribe(self, client: mqtt.Client) -> None:
        client.subscribe(
            [
                (f"$share/{self._share_group}/{RESULT_FILTER}", 1),
                (f"$share/{self._share_group}/{STATUS_FILTER}", 1),
            ]
        )

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("commands connection refused", reason=str(reason_code))
            return
        self._subscribe(client)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        if all(not rc.is_failure for rc in reason_codes):
            self._call_soon(self._subscribed.set)
        else:
            # The commands role is given once the dynsec connection is up; then resubscribe.
            log.warning("commands subscriptions refused", reasons=[str(r) for r in reason_codes])

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._call_soon(self._subscribed.clear)
        log.warning("commands connection lost", reason=str(reason_code))

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._call_soon(self._enqueue, message.topic, bytes(message.payload))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        try:
            self._messages.put_nowait((topic, payload))
        except asyncio.QueueFull:
            log.warning("command answers queue full; message dropped", topic=topic)

    def _call_soon(self, fn, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # -- use ---------------------------------------------------------------------------------

    async def publish(self, uid: str, payload: bytes) -> None:
        """Hand a command to the broker at QoS 1; returns once the broker has taken it."""
        if not self._client.is_connected():
            raise CommandsUnavailableError("not connected to the broker")
        info = self._client.publish(command_topic(uid), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CommandsUnavailableError(f"publish failed ({info.rc})")
        try:
            await asyncio.to_thread(info.wait_for_publish, self.publish_timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise CommandsUnavailableError(str(exc)) from exc
        if not info.is_published():
            raise CommandsUnavailableError("the broker did not take the command in time")

    async def consume(self, on_message: MessageHandler) -> None:
        """Hand every device answer to `on_message`, one at a time; errors are logged."""
        while True:
            topic, payload = await self._messages.get()
            try:
                await on_message(topic, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a command answer could not be handled", topic=topic)
