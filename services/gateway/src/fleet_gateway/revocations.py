"""Revocations reach the gateway at once: the auth service announces each on
`fleet:revocations`, and this drops the user's cached revocation state (so their next
request reads Redis) and wakes their live WebSockets, each of which then checks its token
again and closes with 4401 if it was revoked.

A lost subscription may have missed announcements: on resubscribing the whole cache is
dropped and every socket checks again. (Each socket also checks at every ping, so a missed
message costs at most a ping interval.)
"""

import asyncio
import json
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet_common.auth import REVOCATIONS_CHANNEL, RevocationList
from fleet_common.logging import get_logger

log = get_logger(__name__)


class RevocationWatch:
    def __init__(self, redis: Redis, revocations: RevocationList) -> None:
        self.redis = redis
        self.revocations = revocations
        self._sockets: dict[UUID, set[asyncio.Event]] = {}

    def watch(self, user_id: UUID) -> asyncio.Event:
        """An event set whenever this user's tokens may have been revoked."""
        event = asyncio.Event()
        self._sockets.setdefault(user_id, set()).add(event)
        return event

    def unwatch(self, user_id: UUID, event: asyncio.Event) -> None:
        events = self._sockets.get(user_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._sockets[user_id]

    def _wake(self, user_id: UUID) -> None:
        self.revocations.forget(user_id)
        for event in self._sockets.get(user_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for user_id in list(self._sockets):
            self._wake(user_id)

    async def run(self) -> None:
        """Listen for as long as the gateway runs."""
        delay_s = 0.5
        first = True
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(REVOCATIONS_CHANNEL)
                    if not first:
                        self.revocations.clear()
                        self._wake_all()
                    first = False
                    delay_s = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("revocation feed lost; retrying", error=str(exc))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 10.0)

    def _on_message(self, data: bytes | str) -> None:
        try:
            self._wake(UUID(str(json.loads(data)["user_id"])))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed revocation message")
