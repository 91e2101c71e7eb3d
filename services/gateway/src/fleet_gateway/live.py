"""The live WebSocket: `/api/v1/ws` relays the org's `fleet:live:{org_id}` messages.

One Redis subscription per org per process (`LiveHub`), fanned out to that org's sockets.
Each socket has one writer task (everything it is sent goes through its queue), app-level
pings (`{"type": "ping"}`, answered by any client message, normally `{"type": "pong"}`), and
closes when its token expires unless the client sends `{"type": "token", "token": …}` with
a fresh token of the same user, or at once (4401) when its token is revoked.

The token comes, in order of preference, as the subprotocol pair `bearer, <token>`
(`new WebSocket(url, ["bearer", token])`; the answer selects `bearer`), as a first message
`{"type": "token", "token": …}` within `ws_auth_timeout_s`, or as `?token=` (kept for
existing clients; every log line redacts it).

A socket opened with `?batch=1` gets its positions gathered into
`{"type": "positions", "data": [...]}` messages, one per `ws_batch_window_s` (or per
`ws_batch_max_positions`): at 10,000 positions a second one message each costs the gateway
a send per position and socket, and the browser a message event per position. Everything
else (alerts, pings, token answers) still goes out at once, after the positions gathered
before it.
"""

import asyncio
import contextlib
import json
import time
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from fleet_common.auth import Principal, TokenVerifier
from fleet_common.errors import ProblemError
from fleet_common.logging import get_logger
from fleet_common.redis import live_channel
from fleet_gateway.config import Settings
from fleet_gateway.revocations import RevocationWatch

log = get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_PING_TIMEOUT = 4408
CLOSE_TRY_AGAIN_LATER = 1013  # the client reads too slowly to keep up
BEARER_SUBPROTOCOL = "bearer"

# How the location service publishes a position (its Lua script writes exactly this).
POSITION_PREFIX = '{"type":"position","data":'


class Subscriber:
    """One socket's inbox. Overflow marks it for closing instead of blocking the org's feed."""

    def __init__(self, size: int, *, batch: bool = False) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.overflowed = asyncio.Event()
        self.batch = batch

    def offer(self, message: str) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed.set()


def position_data(message: str) -> str | None:
    """The `data` of a `{"type": "position"}` message as JSON text; None for other messages."""
    if message.startswith(POSITION_PREFIX) and message.endswith("}"):
        return message[len(POSITION_PREFIX) : -1]  # the common case: no parsing
    try:
        decoded = json.loads(message)
    except ValueError:
        return None
    if isinstance(decoded, dict) and decoded.get("type") == "position" and "data" in decoded:
        return json.dumps(decoded["data"], separators=(",", ":"))
    return None


class PositionBatch:
    """An org's batched sockets and the positions waiting for their next message."""

    def __init__(self, window_s: float, max_positions: int) -> None:
        self.window_s = window_s
        self.max_positions = max_positions
        self.subscribers: set[Subscriber] = set()
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, data: str) -> None:
        self._pending.append(data)
        if len(self._pending) >= self.max_positions:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self.flush)

    def offer(self, message: str) -> None:
        """Send `message` now, after the positions gathered so far (order is kept)."""
        self.flush()
        for subscriber in list(self.subscribers):
            subscriber.offer(message)

    def flush(self) -> None:
        self.cancel()
        if not self._pending:
            return
        message = '{"type":"positions","data":[' + ",".join(self._pending) + "]}"
        self._pending = []
        for subscriber in list(self.subscribers):
            subscriber.offer(message)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class LiveHub:
    """Shares one Redis pub/sub subscription per org among that org's sockets."""

    def __init__(
        self, redis: Redis, *, batch_window_s: float = 0.2, batch_max_positions: int = 1000
    ) -> None:
        self.redis = redis
        self.batch_window_s = batch_window_s
        self.batch_max_positions = batch_max_positions
        self._subscribers: dict[UUID, set[Subscriber]] = {}
        self._batches: dict[UUID, PositionBatch] = {}
        self._readers: dict[UUID, asyncio.Task[None]] = {}
        self._subscribed: dict[UUID, asyncio.Event] = {}

    def subscription_count(self) -> int:
        return len(self._readers)

    async def join(self, org_id: UUID, subscriber: Subscriber, *, wait_s: float = 5.0) -> None:
        """Add a socket; the first of an org starts the org's subscription."""
        self._subscribers.setdefault(org_id, set()).add(subscriber)
        if subscriber.batch:
            batch = self._batches.get(org_id)
            if batch is None:
                batch = self._batches[org_id] = PositionBatch(
                    self.batch_window_s, self.batch_max_positions
                )
            batch.subscribers.add(subscriber)
        if org_id not in self._readers:
            self._subscribed[org_id] = asyncio.Event()
            self._readers[org_id] = asyncio.create_task(self._read(org_id))
        # Messages published after join() returns are delivered (unless Redis is down).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._subscribed[org_id].wait()

    async def leave(self, org_id: UUID, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(org_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        batch = self._batches.get(org_id)
        if batch is not None:
            batch.subscribers.discard(subscriber)
            if not batch.subscribers:
                batch.cancel()
                del self._batches[org_id]
        if not subscribers:
            del self._subscribers[org_id]
            self._subscribed.pop(org_id, None)
            reader = self._readers.pop(org_id, None)
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def close(self) -> None:
        for org_id in list(self._readers):
            reader = self._readers.pop(org_id)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for batch in self._batches.values():
            batch.cancel()
        self._batches.clear()
        self._subscribers.clear()

    async def _read(self, org_id: UUID) -> None:
        channel = live_channel(org_id)
        backoff_s = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self._subscribed[org_id].set()
                    backoff_s = 0.5
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=30.0
                        )
                        if message is None or message["type"] != "message":
                            continue
                        data = message["data"]
                        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                        self._deliver(org_id, text)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("live subscription lost; retrying", org_id=str(org_id), error=str(exc))
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    def _deliver(self, org_id: UUID, text: str) -> None:
        batch = self._batches.get(org_id)
        if batch is None:
            for subscriber in list(self._subscribers.get(org_id, ())):
                subscriber.offer(text)
            return
        for subscriber in list(self._subscribers.get(org_id, ())):
            if not subscriber.batch:
                subscriber.offer(text)
        data = position_data(text)
        if data is None:
            batch.offer(text)
        else:
            batch.add(data)


async def _pump(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        message = await subscriber.queue.get()
        await websocket.send_text(message)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(code, reason)


async def _authenticate(
    websocket: WebSocket, verifier: TokenVerifier, settings: Settings
) -> Principal | None:
    """Accept the socket and verify its token (subprotocol, first message or query), or
    close it with 4401 and return None. Accepted first so that a bad token can be refused
    with 4401 (a refusal during the handshake could only be an HTTP 403)."""
    offered: list[str] = websocket.scope.get("subprotocols") or []
    token = None
    if BEARER_SUBPROTOCOL in offered:
        position = offered.index(BEARER_SUBPROTOCOL)
        token = offered[position + 1] if position + 1 < len(offered) else None
    # A browser that offered a subprotocol fails the connection unless one is selected.
    selected = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None
    await websocket.accept(subprotocol=selected)
    token = token or websocket.query_params.get("token")
    if not token:
        try:
            async with asyncio.timeout(settings.ws_auth_timeout_s):
                token = _token_message(await websocket.receive_text())
        except TimeoutError:
            token = None
        except WebSocketDisconnect:
            return None
        if not token:
            await _close(websocket, CLOSE_UNAUTHORIZED, "a token is required")
            return None
    try:
        return await verifier.verify(token)
    except ProblemError as exc:
        await _close(websocket, CLOSE_UNAUTHORIZED, exc.detail[:120])
        return None


def _token_message(text: str) -> str | None:
    """The token of a `{"type": "token", "token": …}` message, else None."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("type") == "token":
        token = message.get("token")
        return token if isinstance(token, str) else None
    return None


async def live_socket(websocket: WebSocket) -> None:
    """`/api/v1/ws`, authenticated by `_authenticate`."""
    settings: Settings = websocket.app.state.settings
    verifier: TokenVerifier = websocket.app.state.token_verifier
    hub: LiveHub = websocket.app.state.live_hub
    watch: RevocationWatch = websocket.app.state.revocation_watch
    principal = await _authenticate(websocket, verifier, settings)
    if principal is None:
        return

    batch = websocket.query_params.get("batch", "").lower() in ("1", "true")
    subscriber = Subscriber(settings.ws_queue_size, batch=batch)
    await hub.join(principal.org_id, subscriber)
    writer = asyncio.create_task(_pump(websocket, subscriber))
    overflow = asyncio.create_task(subscriber.overflowed.wait())
    revocation = watch.watch(principal.user_id)
    revoked = asyncio.create_task(revocation.wait())
    receiver: asyncio.Task[str] | None = None
    close_code, close_reason = 1000, ""
    try:
        expires_at = principal.expires_at
        last_heard = time.monotonic()
        next_ping = last_heard + settings.ws_ping_interval_s
        dead_after_s = settings.ws_ping_interval_s * settings.ws_missed_pings
        while True:
            if receiver is None:
                receiver = asyncio.create_task(websocket.receive_text())
            now = time.monotonic()
            until_expiry = expires_at - time.time()
            if until_expiry <= 0:
                close_code, close_reason = CLOSE_UNAUTHORIZED, "token expired"
                break
            if now - last_heard > dead_after_s:
                close_code, close_reason = CLOSE_PING_TIMEOUT, "no answer to pings"
                break
            if now >= next_ping:
                # Also a check for a revocation whose announcement was missed.
                if await _is_revoked(verifier, principal):
                    close_code, close_reason = CLOSE_UNAUTHORIZED, "token revoked"
                    break
                subscriber.offer(json.dumps({"type": "ping", "ts": int(time.time())}))
                next_ping = now + settings.ws_ping_interval_s
            timeout = max(0.01, min(until_expiry, next_ping - now))
            done, _ = await asyncio.wait(
                {receiver, writer, overflow, revoked},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if revoked in done:
                revocation.clear()
                revoked = asyncio.create_task(revocation.wait())
                if await _is_revoked(verifier, principal):
                    close_code, close_reason = CLOSE_UNAUTHORIZED, "token revoked"
                    break
            if writer in done:
                break  # the peer is gone (send failed)
            if overflow in done:
                close_code, close_reason = CLOSE_TRY_AGAIN_LATER, "client too slow"
                break
            if receiver in done:
                text = receiver.result()  # raises WebSocketDisconnect when the peer left
                receiver = None
                last_heard = time.monotonic()
                renewed = await _renewed(text, principal, verifier)
                if renewed is False:
                    close_code, close_reason = CLOSE_UNAUTHORIZED, "invalid token"
                    break
                if renewed is not None:
                    principal, expires_at = renewed, renewed.expires_at
                    subscriber.offer(
                        json.dumps({"type": "token_accepted", "expires_at": expires_at})
                    )
    except WebSocketDisconnect:
        close_code = 0
    finally:
        tasks = [t for t in (writer, overflow, revoked, receiver) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        watch.unwatch(principal.user_id, revocation)
        await hub.leave(principal.org_id, subscriber)
        if close_code:
            await _close(websocket, close_code, close_reason)


async def _is_revoked(verifier: TokenVerifier, principal: Principal) -> bool:
    revocations = verifier.revocations
    return revocations is not None and await revocations.is_revoked(principal)


async def _renewed(
    text: str, principal: Principal, verifier: TokenVerifier
) -> Principal | bool | None:
    """The new principal for a valid `{"type": "token"}` message, False for an invalid
    one, None for any other message."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "token":
        return None
    token = message.get("token")
    if not isinstance(token, str):
        return False
    try:
        fresh = await verifier.verify(token)
    except ProblemError:
        return False
    if fresh.user_id != principal.user_id or fresh.org_id != principal.org_id:
        return False
    return fresh
