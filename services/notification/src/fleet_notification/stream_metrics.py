"""The event stream's backlog for the `notification` group, read from Redis at each scrape.

`lag` is how many entries the group has not been given yet (Redis 7's XINFO GROUPS), and
`pending` how many it was given but has not acknowledged: both growing means the consumers
fall behind, or fail, and alerts arrive late.
"""

from prometheus_client import Gauge
from redis.asyncio import Redis

from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM

# Every replica reads the same group's figures: aggregate with max, not sum.
STREAM_LAG = Gauge(
    "notification_event_stream_lag",
    "Entries of fleet:events not yet read by the notification group.",
    multiprocess_mode="max",
)
STREAM_PENDING = Gauge(
    "notification_event_stream_pending",
    "Entries read by the notification group but not yet acknowledged.",
    multiprocess_mode="max",
)


def stream_hook(redis: Redis):
    async def read_stream_backlog() -> None:
        try:
            groups = await redis.xinfo_groups(EVENTS_STREAM)
        except Exception:
            # Redis down or the stream not made yet: the figure is unknown, not zero.
            STREAM_LAG.set(float("nan"))
            STREAM_PENDING.set(float("nan"))
            raise
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == EVENTS_GROUP:
                lag = group.get("lag")
                STREAM_LAG.set(float("nan") if lag is None else lag)
                STREAM_PENDING.set(group["pending"])
                return
        STREAM_LAG.set(float("nan"))
        STREAM_PENDING.set(float("nan"))

    return read_stream_backlog
