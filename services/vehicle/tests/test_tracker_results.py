"""The trackers' command results stream read by several vehicle replicas in one consumer
group: each result is handled once, and one a replica read and never acknowledged (it
crashed) is taken over by another."""

import asyncio
import uuid

from fleet_common.tasks import stop_tasks
from fleet_common.tracker_commands import RESULTS_STREAM
from fleet_vehicle.commands.trackers import TrackerResults


def collector(into: list):
    async def on_result(uid, result) -> None:
        into.append((uid, result.id, result.status))

    return on_result


async def add_result(redis, uid: str) -> uuid.UUID:
    command_id = uuid.uuid4()
    await redis.xadd(
        RESULTS_STREAM,
        {"id": str(command_id), "uid": uid, "status": "acknowledged", "message": "ok"},
    )
    return command_id


async def until(predicate, timeout_s: float = 10.0) -> None:
    """Poll an async predicate until it holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


async def test_replicas_split_results_and_take_over_a_crashed_ones(redis):
    group = f"test-{uuid.uuid4().hex[:8]}"
    uid = f"tracker-{uuid.uuid4().hex[:8]}"
    seen_a: list = []
    seen_b: list = []
    replicas = [
        TrackerResults(redis, group, collector(seen_a), claim_idle_ms=300),
        TrackerResults(redis, group, collector(seen_b), claim_idle_ms=300),
    ]
    tasks = [asyncio.create_task(replica.run()) for replica in replicas]
    try:

        async def group_exists() -> bool:
            if not await redis.exists(RESULTS_STREAM):
                return False  # the replicas create it with their group
            groups = await redis.xinfo_groups(RESULTS_STREAM)
            return any(g["name"] in (group, group.encode()) for g in groups)

        await until(group_exists)
        sent = [await add_result(redis, uid) for _ in range(20)]

        async def all_handled() -> bool:
            return len(seen_a) + len(seen_b) >= len(sent)

        await until(all_handled)
        await asyncio.sleep(0.3)  # nothing more arrives: each was handled once
        handled = [command_id for _uid, command_id, _status in seen_a + seen_b]
        assert sorted(handled) == sorted(sent)
        assert {(u, s) for u, _id, s in seen_a + seen_b} == {(uid, "acknowledged")}

        # A replica reads a result and dies before acknowledging it.
        await stop_tasks(tasks)
        lost = await add_result(redis, uid)
        read = await redis.xreadgroup(group, "crashed-replica", {RESULTS_STREAM: ">"}, count=10)
        assert [fields[b"id"].decode() for _s, entries in read for _i, fields in entries] == [
            str(lost)
        ]
        seen_c: list = []
        tasks = [
            asyncio.create_task(
                TrackerResults(redis, group, collector(seen_c), claim_idle_ms=300).run()
            )
        ]

        async def taken_over() -> bool:
            return bool(seen_c)

        await until(taken_over)
        assert [command_id for _uid, command_id, _status in seen_c] == [lost]
        pending = await redis.xpending(RESULTS_STREAM, group)
        assert pending["pending"] == 0
    finally:
        # Not a bare cancel: one that meets redis-py's own timeout comes out as TimeoutError.
        await stop_tasks(tasks)
        await redis.xgroup_destroy(RESULTS_STREAM, group)
