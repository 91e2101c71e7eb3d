"""Stopping background tasks at shutdown, within a bound."""

import asyncio
from collections.abc import Iterable

from fleet_common.logging import get_logger

log = get_logger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task | None], timeout_s: float = 5.0) -> None:
    """Cancel `tasks` and wait for them to end, for at most `timeout_s`.

    A background loop that retries on `Exception` around a library call can swallow one
    cancellation: on Python 3.11, a cancel that coincides with the expiry of an
    `asyncio.timeout` inside redis-py or asyncpg comes out as `TimeoutError`, the loop logs
    it and goes on (a test session's end hung on exactly that). So cancel again until the
    task ends, and give up, logged, rather than hang a shutdown.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("tasks did not stop in time", tasks=sorted(t.get_name() for t in pending))
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=min(remaining, 0.5))
