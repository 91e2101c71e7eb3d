"""CPU per message of the MQTT consumer: paho's own thread vs the service's event loop.

Starts a throwaway Mosquitto, then for each mode runs a consumer process (a `BufferedClient`
as the location service configures it: MQTT 5, persistent session, ReceiveMaximum, shared
subscription, manual acks) fed by raw-socket publishers (`loadgen.publisher_main`, other
processes) at a fixed rate. The consumer's event loop plays the pipeline: the intake takes
up to 2000 messages at a time and parses each payload, a "commit" every 50 ms (or 2000
messages) is followed by `ack_many`; `--work-us` adds that much CPU per message on the loop
(the real pipeline validates, maps devices, writes and updates Redis there too). Modes:

- thread/*:  `loop_start()`; messages cross to the loop through a thread-safe inbox
             (`put_many` + `call_soon_threadsafe`), as the service did before.
- loop/*:    `EventLoopNetwork`: reads on the loop itself, as the service does now.
- */asyncio: asyncio's default loop; */uvloop: uvloop (what uvicorn runs the service on).

Reported: the consumer process's CPU time (all its threads; `time.process_time`) from its
first message to its last acknowledgement, per message (the `--work-us` included), and for
thread/* the share of it spent in paho's thread; and how many reads (hand-overs) it took.
Modes alternate over `--rounds` so that noise from the shared machine spreads evenly.

    uv run --no-sync python services/location/bench/consumer_cpu.py --messages 100000
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import publisher_main

from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import Stack

PASSWORD = "Bench-Passw0rd!"  # noqa: S105 - throwaway broker


class ThreadInbox:
    """The previous hand-off from paho's thread to the loop (pipeline.Inbox before)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque = deque()
        self._event = asyncio.Event()
        self._signalled = False

    def put_many(self, items: list) -> None:
        self._items.extend(items)
        if items and not self._signalled:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._event.set)

    async def take(self, max_items: int) -> list:
        while not self._items:
            self._event.clear()
            self._signalled = False
            if self._items:
                break
            await self._event.wait()
        items = []
        popleft = self._items.popleft
        while self._items and len(items) < max_items:
            items.append(popleft())
        return items


def consumer_main(mode, port, password, group, work_us, ready, expected, results) -> None:
    if mode.endswith("/uvloop"):
        import uvloop

        uvloop.run(_consume(mode, port, password, group, work_us, ready, expected, results))
    else:
        asyncio.run(_consume(mode, port, password, group, work_us, ready, expected, results))


async def _consume(mode, port, password, group, work_us, ready, expected, results) -> None:
    from fleet_location.ingest.mqtt import BufferedClient, EventLoopNetwork
    from fleet_location.ingest.pipeline import Inbox

    loop = asyncio.get_running_loop()
    threaded = mode.startswith("thread/")
    inbox = ThreadInbox(loop) if threaded else Inbox()
    reads = 0

    def on_messages(items: list) -> None:
        nonlocal reads
        reads += 1
        inbox.put_many(items)

    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        on_messages=on_messages,
        client_id=f"bench-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    client.username_pw_set("fleet-location", password)
    client.reconnect_delay_set(0.5, 10)
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(
        [(f"$share/{group}/fleet/+/telemetry", SubscribeOptions(qos=1))]
    )
    client.on_subscribe = lambda *_: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 300
    properties.ReceiveMaximum = 4000
    client.connect_async("127.0.0.1", port, keepalive=30, clean_start=False, properties=properties)
    network = None
    if threaded:
        client.loop_start()
    else:
        network = EventLoopNetwork(client)
        network.start()
    assert await asyncio.to_thread(subscribed.wait, 30), "no SUBACK"
    ready.set()

    received = 0
    acked = 0
    unacked: list[int] = []
    first_cpu = first_wall = last_cpu = last_wall = 0.0
    first_ru = last_ru = None
    first_paho = last_paho = 0.0
    due = asyncio.Event()

    def paho_cpu() -> float:
        """CPU seconds of paho's network thread so far (0 when there is none)."""
        thread = client._thread
        if thread is None or thread.native_id is None:
            return 0.0
        stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def committer() -> None:
        nonlocal acked, last_cpu, last_wall, last_ru, last_paho, unacked
        while True:
            try:
                async with asyncio.timeout(0.05):
                    await due.wait()
            except TimeoutError:
                pass
            due.clear()
            if not unacked:
                continue
            batch, unacked = unacked, []
            await asyncio.sleep(0.002)  # the commit's round trip
            client.ack_many(batch)
            acked += len(batch)
            last_cpu, last_wall = time.process_time(), time.monotonic()
            last_ru = resource.getrusage(resource.RUSAGE_SELF)
            last_paho = paho_cpu()

    commit_task = asyncio.create_task(committer())
    while True:
        try:
            async with asyncio.timeout(5.0 if received else 120.0):
                items = await inbox.take(2000)
        except TimeoutError:
            break
        if not received:
            first_cpu, first_wall = time.process_time(), time.monotonic()
            first_ru = resource.getrusage(resource.RUSAGE_SELF)
            first_paho = paho_cpu()
        for item in items:
            orjson.loads(item.payload)  # the parse
            unacked.append(item.mid)
        if work_us:
            until = time.thread_time() + work_us * 1e-6 * len(items)  # CPU, not wall time
            while time.thread_time() < until:
                pass
        received += len(items)
        if len(unacked) >= 2000:
            due.set()
        if expected.value and acked >= expected.value:
            break
        if expected.value and received >= expected.value:
            due.set()
    due.set()
    while acked < received:  # noqa: ASYNC110 - the last commit, at a benchmark's end
        await asyncio.sleep(0.01)
    commit_task.cancel()
    if network is not None:
        await network.stop()
    else:
        client.disconnect()
        client.loop_stop()
    switches = (last_ru.ru_nvcsw + last_ru.ru_nivcsw) - (first_ru.ru_nvcsw + first_ru.ru_nivcsw)
    results.put(
        {
            "mode": mode,
            "received": received,
            "reads": reads,
            "cpu_s": last_cpu - first_cpu,
            "paho_s": last_paho - first_paho,
            "wall_s": last_wall - first_wall,
            "switches": switches,
        }
    )


def create_publishers(stack: Stack, count: int) -> list[tuple[str, str]]:
    stack.mosquitto.ctrl("createRole", "bench-pub")
    stack.mosquitto.ctrl("addRoleACL", "bench-pub", "publishClientSend", "fleet/#", "allow")
    devices = []
    for i in range(count):
        uid = f"bench-{i:03d}"
        stack.mosquitto.ctrl("createClient", uid, "-p", PASSWORD)
        stack.mosquitto.ctrl("addClientRole", uid, "bench-pub")
        devices.append((uid, PASSWORD))
    return devices


def run_once(stack: Stack, devices, mode: str, args, ctx) -> dict:
    messages, rate = args.messages, args.rate
    ready, expected, results = ctx.Event(), ctx.Value("q", 0), ctx.Queue()
    group = f"g{uuid.uuid4().hex[:6]}"
    consumer = ctx.Process(
        target=consumer_main,
        args=(
            mode,
            stack.mosquitto.port,
            stack.mosquitto.ingest_password,
            group,
            args.work_us,
            ready,
            expected,
            results,
        ),
    )
    consumer.start()
    assert ready.wait(60), "consumer not ready"
    published = ctx.Queue()
    publisher = ctx.Process(
        target=publisher_main,
        args=(
            stack.mosquitto.port,
            devices,
            "telemetry",
            rate,
            messages / rate,
            time.time() + 0.5,
            1,
            200,
            published,
        ),
    )
    publisher.start()
    sent = published.get(timeout=messages / rate + 120)
    if isinstance(sent, BaseException):
        raise sent
    publisher.join()
    expected.value = sent[0]
    outcome = results.get(timeout=120)
    consumer.join(30)
    outcome["sent"] = sent[0]
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=10_000, help="offered messages/s")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="thread/asyncio,loop/asyncio,thread/uvloop,loop/uvloop")
    parser.add_argument("--work-us", type=float, default=0.0, help="loop CPU per message")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-mqtt-"))
    os.chmod(base, 0o755)  # noqa: S103 - mosquitto runs as its own user
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    stack.start([stack.mosquitto])
    try:
        devices = create_publishers(stack, args.devices)
        modes = args.modes.split(",")
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds):
            order = modes if round_ % 2 == 0 else modes[::-1]
            for mode in order:
                outcome = run_once(stack, devices, mode, args, ctx)
                runs[mode].append(outcome)
                paho = 100 * outcome["paho_s"] / outcome["cpu_s"]
                print(
                    f"round {round_ + 1} {mode:14} received {outcome['received']:>7}"
                    f"/{outcome['sent']:<7} cpu {outcome['cpu_s']:6.2f} s"
                    f"  {1e6 * outcome['cpu_s'] / outcome['received']:6.2f} us/msg"
                    f"  paho thread {paho:4.1f}%"
                    f"  reads {outcome['reads']:>6}"
                    f" ({outcome['received'] / max(outcome['reads'], 1):6.1f} msg/read)"
                    f"  ctx switches {outcome['switches']:>7}  wall {outcome['wall_s']:5.1f} s",
                    flush=True,
                )
        print(f"\nper message, median over {args.rounds} rounds (--work-us {args.work_us:g}):")
        for mode, outcomes in runs.items():
            per = [1e6 * o["cpu_s"] / o["received"] for o in outcomes]
            runs_text = ", ".join(f"{value:.2f}" for value in per)
            print(f"  {mode:14} {statistics.median(per):6.2f} us CPU  (runs: {runs_text})")
    finally:
        stack.mosquitto.stop()
        remove_tree(base)


if __name__ == "__main__":
    main()
