"""`stop_tasks`: a loop that swallowed a cancellation still stops; a task that never stops
does not hang the shutdown."""

import asyncio
import contextlib
import time

from fleet_common.tasks import stop_tasks


async def test_a_loop_that_swallows_one_cancellation_is_stopped():
    swallowed = 0

    async def retrying_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                # What a TimeoutError caught as `Exception` amounts to: the loop goes on.
                swallowed += 1
                if swallowed == 1:
                    continue
                raise

    task = asyncio.create_task(retrying_loop(), name="retrying")
    await asyncio.sleep(0)
    await stop_tasks([task, None], timeout_s=5)
    assert task.cancelled()
    assert swallowed == 2


async def test_a_task_that_never_stops_is_given_up_on_in_time():
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    started = time.monotonic()
    await stop_tasks([task], timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert not task.done()
    stop.set()
    task.cancel()
    await task


async def test_finished_tasks_are_left_as_they_are():
    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    await stop_tasks([task])
    assert task.result() == 7
