"""`make bench-dashboard`: the dashboard in headless Chromium with 10,000 vehicles each
updating once a second, against a baseline page that updates its map source once per
message, in the same run and with the same feed.

The stack is real: PostgreSQL, Redis and Mosquitto (fleet_devstack, in a temporary folder)
and the five services as uvicorn processes, the gateway serving `frontend/dist`. An org is
registered; its 10,000 vehicles are written to the vehicle service's database and their
latest positions to its Redis hash (what `GET /positions/latest` reads).

The live feed (`--feed`):
- `replay` (the default): a local replay of the gateway's messages in the page
  (replay_socket.js stands in for `WebSocket` on `/api/v1/ws`; a Worker makes the messages),
  so that each page is measured alone: on this two-core machine the publisher and the
  gateway's 10,000 messages a second would take the cores the page uses (the gateway's cost
  is live_batch.py's to measure). A page that cannot keep up gets at most a second of
  messages queued and the rest is skipped and counted (the real gateway would close its
  socket, 1013, and the page would then idle). HTTP (sign-in, vehicles, latest positions)
  still goes to the real gateway. The app's sign-in is also measured once
  more on the real socket with the publisher running (a dispatcher signs in under load).
- `socket`: the real gateway WebSocket, fed by a publisher process that sends the positions
  to the org's live channel at 10,000 a second, spelled as the location service's script
  spells them (the gateway, its WebSocket and the page are measured, not the ingest
  pipeline; see `make bench-ingest` for that).

The app signs in through its form and opens its batched socket (`?batch=1`). The baseline
is a page the gateway serves beside the build (`/__bench/`, MapLibre from the app's own
node_modules, the same positions, one message per position) that calls `setData` on its
GeoJSON source for every message, as a dashboard without coalescing does.

Printed for each: the main thread's busy share while applying updates and the longest task
(Chrome's Performance metrics and long-task entries), frames per second, the time from
sign-in to all 10,000 vehicles shown (the app: from the click event on its sign-in button to
the frame after its vehicle list counts them all and its map source holds them all,
`window.__fleet.vehiclesDrawn`, timed in the page; the baseline: from its load until its
source holds them all), the JS heap after garbage collection at the start and the end of
the measured window, map source updates per second, positions fed to the page (replay) and
the live socket's state at the end, where the app's sign-in time went (its API calls, its
socket, its map and list, in ms after the click), and the app's JS bundle gzipped (initial:
index.html's scripts and preloads; and all of it).

    uv run python services/gateway/bench/dashboard.py [--minutes 5] [--quick]
        [--feed replay|socket] [--gl swiftshader|none]
"""

import argparse
import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import redis
from live_batch import TICK_S, VEHICLES, position_message, vehicle_ids
from playwright.async_api import Page, async_playwright

from fleet_common.redis import latest_key
from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import (
    DATABASES,
    REPO_ROOT,
    SERVICE_PORTS,
    Stack,
    migrate,
    service_command,
    wait_until_live,
)
from fleet_gateway.config import Settings

FRONTEND = REPO_ROOT / "frontend"
DIST = FRONTEND / "dist"
MAPLIBRE = FRONTEND / "node_modules" / "maplibre-gl" / "dist"
REPLAY = Path(__file__).with_name("replay_socket.js")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# This machine has no GPU; WebGL is drawn in software either way. "swiftshader" draws it in the
# GPU process and composites there, as a browser with a GPU does; "none" (--disable-gpu)
# composites in software, which reads every changed WebGL frame back on the page's main
# thread (GLES2 ReadPixels, about 55 ms a frame here): a PC without a GPU.
GL_ARGS = {
    "swiftshader": ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    "none": ["--disable-gpu"],
}
PASSWORD = "Bench-Passw0rd-2026"  # noqa: S105 - a throwaway bench user
GOALS = {"busy": 0.25, "longest_ms": 100.0, "drawn_s": 3.0, "initial_js_kb": 600.0}

# Collected in every page from its first script: long tasks and animation frames.
PROBE = """
window.__bench = {longest: 0, longTasks: 0, frames: 0};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__bench.longTasks += 1;
    window.__bench.longest = Math.max(window.__bench.longest, entry.duration);
  }
}).observe({type: "longtask", buffered: true});
const countFrame = () => { window.__bench.frames += 1; requestAnimationFrame(countFrame); };
requestAnimationFrame(countFrame);
// When the first live socket opened and got its first message (real or replayed).
const Native = window.WebSocket;
window.WebSocket = new Proxy(Native, {construct(target, args) {
  const socket = Reflect.construct(target, args);
  socket.addEventListener("open", () => { window.__bench.socketOpenAt ??= performance.now(); });
  socket.addEventListener("message", () => {
    window.__bench.firstMessageAt ??= performance.now(); }, {once: true});
  return socket;
}});
"""
# Installed before sign-in is clicked. Times are the page's own (performance.now()), from the
# click event on the sign-in button (what Playwright's click costs before the event is the
# harness's, not the app's): when the app's map source and its list first held every vehicle
# (mapAt, listAt), the frame after both (drawnAt), and when the list had their names
# (namesAt); polled every 20 ms.
WATCH_SIGNIN = f"""() => {{
  const b = window.__bench;
  document.addEventListener("click", (event) => {{
    if (event.target.closest("[data-testid=signin-submit]")) b.clickAt ??= performance.now();
  }}, true);
  const watch = setInterval(() => {{
    if (b.clickAt === undefined) return;
    const now = performance.now();
    if (b.mapAt === undefined && window.__fleet?.vehiclesDrawn >= {VEHICLES}) b.mapAt = now;
    const list = document.querySelector("[data-testid=vehicle-list]");
    if (b.listAt === undefined && list?.dataset.count === "{VEHICLES}") b.listAt = now;
    if (b.drawnAt === undefined && b.mapAt !== undefined && b.listAt !== undefined) {{
      b.drawnAt = null;
      requestAnimationFrame(() => (b.drawnAt = performance.now()));
    }}
    // The bench's vehicles are named "Truck …": the list has their names once all pages of
    // GET /vehicles are in (until then a row is named by its id).
    const row = document.querySelector("[data-testid=vehicle-row]");
    if (b.namesAt === undefined && row?.textContent.includes("Truck ")) b.namesAt = now;
    if (b.drawnAt && b.namesAt !== undefined) clearInterval(watch);
  }}, 20);
}}"""
# Milliseconds after the click: the API calls (resource timing) and the marks above.
SIGNIN_PHASES = """() => {
  const b = window.__bench;
  const at = (t) => (t === undefined || t === null ? null : Math.round(t - b.clickAt));
  const calls = {login: "/api/v1/auth/login", vehicles: "/api/v1/vehicles",
    latest: "/api/v1/positions/latest", basemap: "/basemap/countries.geojson"};
  const phases = {};
  for (const [name, path] of Object.entries(calls)) {
    const entries = performance.getEntriesByType("resource")
      .filter((e) => new URL(e.name).pathname === path && e.startTime >= b.clickAt);
    if (entries.length === 0) continue;
    phases[name] = {start: at(Math.min(...entries.map((e) => e.startTime))),
      firstByte: at(Math.min(...entries.map((e) => e.responseStart))),
      end: at(Math.max(...entries.map((e) => e.responseEnd))),
      kb: Math.round(entries.reduce((n, e) => n + e.encodedBodySize, 0) / 1024),
      count: entries.length};
  }
  return {phases, socketOpen: at(b.socketOpenAt), firstMessage: at(b.firstMessageAt),
    map: at(b.mapAt), list: at(b.listAt), drawn: at(b.drawnAt), names: at(b.namesAt)};
}"""

BASELINE_HTML = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/__bench/maplibre-gl.css">
<style>html,body,#map{margin:0;height:100%}</style></head><body><div id="map"></div>
<script src="/__bench/maplibre-gl.js"></script>
<script>
const token = new URLSearchParams(location.search).get("token");
const features = new Map();
window.__drawn = 0;
window.__sourceUpdates = 0;
window.__closed = null;
const map = new maplibregl.Map({
  container: "map",
  style: {version: 8, sources: {}, layers: [
    {id: "bg", type: "background", paint: {"background-color": "#dfe7ef"}}]},
  center: [106.65, 10.75], zoom: 9,
});
const feature = (p) => ({type: "Feature", id: p.vehicle_id,
  geometry: {type: "Point", coordinates: [p.lon, p.lat]}, properties: {speed: p.speed_kph}});
const draw = () => {
  map.getSource("v").setData({type: "FeatureCollection", features: [...features.values()]});
  window.__drawn = features.size;
  window.__sourceUpdates += 1;
};
map.on("load", async () => {
  map.addSource("v", {type: "geojson", data: {type: "FeatureCollection", features: []}});
  map.addLayer({id: "v", type: "circle", source: "v",
    paint: {"circle-radius": 3, "circle-color": "#1a73e8"}});
  const latest = await fetch("/api/v1/positions/latest?limit=10000",
    {headers: {Authorization: "Bearer " + token}});
  for (const p of (await latest.json()).items) features.set(p.vehicle_id, feature(p));
  draw();
  const socket = new WebSocket(`ws://${location.host}/api/v1/ws?token=${token}`);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ping") { socket.send('{"type":"pong"}'); return; }
    if (message.type !== "position") return;
    features.set(message.data.vehicle_id, feature(message.data));
    draw();  // once per message: what the app's per-frame coalescing avoids
  };
  // The gateway closes a socket that reads too slowly (1013): the page then idles.
  socket.onclose = (event) => { window.__closed = `${event.code} ${event.reason}`; };
});
</script></body></html>"""


def bundle_kb() -> tuple[float, float]:
    """(initial, all) JS of the build, gzipped, in KB."""
    index = (DIST / "index.html").read_text()
    initial = set(re.findall(r'(?:src|href)="(/assets/[^"]+\.js)"', index))
    sizes = {
        f"/assets/{path.name}": len(gzip.compress(path.read_bytes(), 9))
        for path in (DIST / "assets").glob("*.js")
    }
    return sum(sizes[p] for p in initial) / 1024, sum(sizes.values()) / 1024


def dashboard_dir(base: Path) -> Path:
    """The build with the baseline page beside it (`/__bench/`), served by the gateway itself.
    A page Playwright fulfils has no address, so Chromium counts it as public and refuses its
    socket to 127.0.0.1 (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS, seen by the page as a
    1006 close before it ever opened)."""
    served = base / "dashboard"
    shutil.copytree(DIST, served)
    (served / "__bench").mkdir()
    (served / "__bench" / "baseline.html").write_text(BASELINE_HTML)
    for name in ("maplibre-gl.js", "maplibre-gl.css"):
        shutil.copy(MAPLIBRE / name, served / "__bench" / name)
    return served


def start_platform(base: Path) -> tuple[Stack, dict[str, str], list[subprocess.Popen], str]:
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    stack.start()
    stack.create_databases()
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = stack.service_env(
        service_urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        keys_dir=base / "keys",
    )
    env.update(
        {
            "LOG_LEVEL": "WARNING",
            "GATEWAY_DASHBOARD_DIR": str(dashboard_dir(base)),
            # The latest positions are never refreshed by devices here: not "offline".
            "LOCATION_OFFLINE_AFTER_S": "86400",
        }
    )
    for service in DATABASES:
        migrate(service, env)
    processes = []
    for service in ["auth", "vehicle", "location", "notification", "gateway"]:
        log = (base / f"{service}.log").open("w")
        process = subprocess.Popen(  # noqa: S603 - our own service command
            service_command(service, ports[service]),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        wait_until_live(ports[service], timeout_s=300, process=process)  # a busy machine
    return stack, env, processes, f"http://127.0.0.1:{ports['gateway']}"


async def seed_vehicles(database_url: str, org_id: str) -> None:
    """The 10,000 vehicles in the vehicle service's database (what `GET /vehicles` lists, 200
    a page), with the ids of their positions: a dispatcher's org has its vehicles."""
    rows = [
        (uuid.UUID(vehicle), uuid.UUID(org_id), f"Truck {n:05d}", f"51C-{n:05d}", f"Depot {n % 8}")
        for n, vehicle in enumerate(vehicle_ids())
    ]
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO vehicles (id, org_id, name, plate, group_name, type, status, odometer_km)"
            " VALUES ($1, $2, $3, $4, $5, 'truck', 'active', 0)",
            rows,
        )
    finally:
        await connection.close()


def seed_latest(redis_url: str, org_id: str) -> None:
    """Every vehicle's latest position, as the location service writes it."""
    client = redis.Redis.from_url(redis_url)
    ids = vehicle_ids()
    latest = {}
    for n, vehicle in enumerate(ids):
        message = position_message(ids, org_id, n)
        latest[vehicle] = message[len('{"type":"position","data":') : -1]
    client.hset(latest_key(org_id), mapping=latest)
    client.close()


async def metrics(session) -> dict[str, float]:
    answer = await session.send("Performance.getMetrics")
    return {m["name"]: m["value"] for m in answer["metrics"]}


async def heap_mb(session) -> float:
    await session.send("HeapProfiler.collectGarbage")
    return (await metrics(session))["JSHeapUsedSize"] / 1e6


async def measure(page: Page, session, seconds: float, updates: str, socket: str) -> dict:
    """`updates`: the page's count of map source updates so far; `socket`: its live
    socket's state (so that a page whose socket closed is not taken for a fast one)."""
    await page.evaluate("window.__bench.longest = 0; window.__bench.frames = 0")
    heap_start = await heap_mb(session)
    fed = "window.__replay ? [window.__replay.positions, window.__replay.skipped] : null"
    before = await metrics(session)
    updates_before, fed_before = await page.evaluate(updates), await page.evaluate(fed)
    # Up to `seconds`, and only while the socket is live: a page whose socket closed idles,
    # and what it did before that is its figure.
    deadline = time.monotonic() + seconds
    while (left_s := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left_s))
        if await page.evaluate(socket) not in ("open", "live"):
            break
    after = await metrics(session)
    updates_after, fed_after = await page.evaluate(updates), await page.evaluate(fed)
    probe = await page.evaluate("window.__bench")
    wall = after["Timestamp"] - before["Timestamp"]
    result = {
        "busy": (after["TaskDuration"] - before["TaskDuration"]) / wall,
        "longest_ms": probe["longest"],
        "fps": probe["frames"] / wall,
        "updates_per_s": (updates_after - updates_before) / wall,
        "measured_s": wall,
        "socket": await page.evaluate(socket),
        "heap_start_mb": heap_start,
        "heap_end_mb": await heap_mb(session),
    }
    if fed_before is not None:
        result["fed_per_s"] = (fed_after[0] - fed_before[0]) / wall
        result["skipped_per_s"] = (fed_after[1] - fed_before[1]) / wall
    return result


async def new_context(browser, replay: str | None):
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    if replay is not None:
        await context.add_init_script(replay)  # before PROBE, which wraps what it installs
    await context.add_init_script(PROBE)
    return context


async def run_app(
    browser, gateway: str, email: str, seconds: float, replay: str | None
) -> dict[str, float]:
    """Sign in through the form, then (`seconds` > 0) measure the live page."""
    context = await new_context(browser, replay)
    page = await context.new_page()
    session = await context.new_cdp_session(page)
    await session.send("Performance.enable")
    await page.goto(gateway + "/")
    await page.get_by_test_id("signin-email").fill(email)
    await page.get_by_test_id("signin-password").fill(PASSWORD)
    await page.evaluate(WATCH_SIGNIN)
    clicked = time.monotonic()
    await page.get_by_test_id("signin-submit").click()
    # The app's own hooks (frontend/README.md): its list counts them all and its map's
    # source holds them all; then one painted frame.
    await page.wait_for_function("window.__bench.drawnAt", timeout=120_000, polling=50)
    result: dict = {"wall_s": time.monotonic() - clicked}
    await page.wait_for_function("window.__bench.namesAt !== undefined", timeout=120_000)
    result["signin"] = await page.evaluate(SIGNIN_PHASES)
    result["drawn_s"] = result["signin"]["drawn"] / 1000
    if seconds > 0:
        await asyncio.sleep(3)
        result |= await measure(
            page, session, seconds, "window.__fleet.sourceUpdates", "window.__fleet.link()"
        )
    await context.close()
    return result


async def run_baseline(
    browser, gateway: str, token: str, seconds: float, replay: str | None
) -> dict[str, float]:
    context = await new_context(browser, replay)
    page = await context.new_page()
    session = await context.new_cdp_session(page)
    await session.send("Performance.enable")
    started = time.monotonic()
    await page.goto(f"{gateway}/__bench/baseline.html?token={token}")
    await page.wait_for_function(f"window.__drawn >= {VEHICLES}", timeout=120_000, polling=50)
    result = {"drawn_s": time.monotonic() - started}
    await asyncio.sleep(3)
    result |= await measure(
        page, session, seconds, "window.__sourceUpdates", "window.__closed ?? 'open'"
    )
    await context.close()
    return result


def replay_script(org_id: str) -> str:
    """replay_socket.js with the gateway's batching defaults and the bench's vehicles."""
    fields = Settings.model_fields
    config = {
        "orgId": org_id,
        "ids": vehicle_ids(),
        "rate": VEHICLES,  # each vehicle once a second
        "batchMax": fields["ws_batch_max_positions"].default,
        "windowMs": fields["ws_batch_window_s"].default * 1000,
        "pingMs": fields["ws_ping_interval_s"].default * 1000,
        "tickMs": TICK_S * 1000,  # the publisher's tick
    }
    return REPLAY.read_text().replace("__REPLAY_CONFIG__", json.dumps(config))


def line(name: str, r: dict) -> str:
    fed = ""
    if "fed_per_s" in r:
        fed = f", fed {r['fed_per_s']:.0f} positions/s ({r['skipped_per_s']:.0f}/s skipped)"
    return (
        f"{name:>9}: main thread {r['busy'] * 100:5.1f}% busy, longest task "
        f"{r['longest_ms']:6.0f} ms, {r['fps']:5.1f} fps, all drawn {r['drawn_s']:5.2f} s "
        f"after {'sign-in' if name == 'app' else 'load'}, "
        f"JS heap {r['heap_start_mb']:6.1f} -> {r['heap_end_mb']:6.1f} MB, "
        f"{r['updates_per_s']:.1f} map source updates/s{fed}, over {r['measured_s']:.0f} s; "
        f"live socket at the end: {r['socket']}"
    )


def signin_line(name: str, r: dict) -> str:
    """Where the time from the click went, in ms after it."""
    s = r["signin"]
    calls = []
    for call, p in s["phases"].items():
        calls.append(f"{call} {p['start']}..{p['end']}")
        if call != "login":
            calls[-1] += f" (first byte {p['firstByte']}, {p['kb']} KB, {p['count']} calls)"
    calls = ", ".join(calls)
    return (
        f"  {name} sign-in, ms after the click: {calls}; socket open {s['socketOpen']}, "
        f"first message {s['firstMessage']}; map source holds all {s['map']}, "
        f"list counts all {s['list']}; all drawn (+1 frame) {s['drawn']}; "
        f"the list has their names {s['names']}; (from before Playwright's click to its "
        f"seeing all drawn: {r['wall_s'] * 1000:.0f})"
    )


async def bench(args, gateway: str, org_id: str, token: str, email: str, publisher) -> None:
    seconds = args.minutes * 60
    initial_kb, all_kb = bundle_kb()
    print(f"JS bundle gzipped: {initial_kb:.0f} KB initial, {all_kb:.0f} KB in all")
    replay = replay_script(org_id) if args.feed == "replay" else None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *GL_ARGS[args.gl]]
        )
        results = {}
        if replay is not None:
            results["app"] = await run_app(browser, gateway, email, seconds, replay)
            results["baseline"] = await run_baseline(browser, gateway, token, seconds, replay)
        feed = subprocess.Popen(publisher)  # noqa: S603, ASYNC220 - our own script
        try:
            if replay is None:
                results["app"] = await run_app(browser, gateway, email, seconds, None)
                results["baseline"] = await run_baseline(browser, gateway, token, seconds, None)
            else:
                # A dispatcher signs in with the live feed on: the same sign-in through the
                # real gateway WebSocket, with the publisher and the gateway busy.
                await asyncio.sleep(3)
                live_signin = await run_app(browser, gateway, email, 0, None)
        finally:
            feed.terminate()
            feed.wait(10)
        await browser.close()
    how = {
        "replay": "a local replay of the gateway's messages in the page (replay_socket.js)",
        "socket": "the real gateway WebSocket, fed by a publisher process through Redis",
    }[args.feed]
    print(
        f"{VEHICLES} vehicles, each once a second; {seconds:g} s measured per page; "
        f"WebGL compositing: {args.gl}; live feed: {how}"
    )
    for name, result in results.items():
        print(line(name, result))
    print(signin_line("app", results["app"]))
    drawn = {args.feed: results["app"]["drawn_s"]}
    if replay is not None:
        print(signin_line("app (real WebSocket, live feed on)", live_signin))
        drawn["socket"] = live_signin["drawn_s"]
    app, baseline = results["app"], results["baseline"]
    print(
        f"ratios app/baseline: busy {app['busy'] / max(baseline['busy'], 1e-9):.2f}, "
        f"longest task {app['longest_ms'] / max(baseline['longest_ms'], 1):.2f}, "
        f"fps {app['fps'] / max(baseline['fps'], 1e-9):.2f}"
    )
    if baseline["socket"] != "open":
        print(
            f"  the baseline's socket closed ({baseline['socket']}) after "
            f"{baseline['measured_s']:.0f} s measured: its figures are of that time"
        )
    growth = app["heap_end_mb"] - app["heap_start_mb"]
    drawn_text = ", ".join(f"{feed}: {s:.2f} s" for feed, s in drawn.items())
    checks = {
        "main thread < 25% busy": app["busy"] < GOALS["busy"],
        "no task > 100 ms": app["longest_ms"] <= GOALS["longest_ms"],
        f"all drawn within 3 s ({drawn_text})": max(drawn.values()) <= GOALS["drawn_s"],
        f"no heap growth ({growth:+.1f} MB)": growth <= 0.1 * app["heap_start_mb"],
        "initial JS < 600 KB gz": initial_kb < GOALS["initial_js_kb"],
    }
    for goal, met in checks.items():
        print(f"  {'met' if met else 'NOT met'}: {goal}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="measured per page")
    parser.add_argument("--quick", action="store_true", help="30 s per page")
    parser.add_argument(
        "--feed",
        choices=["replay", "socket"],
        default="replay",
        help="the live feed: replayed in the page (the page alone) or the real WebSocket",
    )
    parser.add_argument(
        "--gl",
        choices=sorted(GL_ARGS),
        default="swiftshader",
        help="how Chromium draws WebGL with no GPU (see GL_ARGS)",
    )
    args = parser.parse_args()
    if args.quick:
        args.minutes = 0.5
    if not (DIST / "index.html").is_file() or not MAPLIBRE.is_dir():
        print("build the dashboard first: cd frontend && npm ci && npm run build", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-dashboard-"))
    os.chmod(base, 0o755)  # noqa: S103 - PostgreSQL runs as another user and must enter
    stack, _env, processes, gateway = start_platform(base)
    try:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = httpx.post(
            f"{gateway}/api/v1/auth/register",
            json={"org_name": "Bench", "email": email, "password": PASSWORD, "full_name": "B"},
            timeout=30,
        )
        registered.raise_for_status()
        org_id = registered.json()["org"]["id"]
        token = registered.json()["access_token"]
        asyncio.run(seed_vehicles(stack.postgres.url("vehicle_db", driver="postgresql"), org_id))
        seed_latest(stack.redis.url, org_id)
        duration_s = args.minutes * 60 * 2 + 600  # both pages, sign-in and warm-up
        publisher = [
            sys.executable,
            str(Path(__file__).with_name("live_batch.py")),
            "--publish",
            stack.redis.url,
            f"fleet:live:{org_id}",
            org_id,
            str(VEHICLES),
            str(duration_s),
        ]
        print(f"started {datetime.now(UTC):%H:%M:%S} UTC; load average {os.getloadavg()[0]:.1f}")
        asyncio.run(bench(args, gateway, org_id, token, email, publisher))
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()
        remove_tree(base)


if __name__ == "__main__":
    sys.exit(main())
