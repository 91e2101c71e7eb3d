"""Browser end-to-end tests: the built dashboard in Debian's headless Chromium (Playwright for
Python, never a downloaded browser), against the whole platform of tests/conftest.py with
devices publishing over MQTT under their own broker credentials.

The e2e tests get a gateway of their own in front of the platform's services (the shared one
is left alone) so that one test can restart it under an open page, and with the sign-in rate
limit raised (every test signs in from 127.0.0.1). Screenshots go to `$E2E_ARTIFACTS`
(default `.state/e2e-artifacts/`), one folder per run; the path is printed at the end.
"""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from fleet_devstack.servers import free_port
from fleet_devstack.stack import REPO_ROOT

FRONTEND = REPO_ROOT / "frontend"
DIST = FRONTEND / "dist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "E2e-Dispatch-Passw0rd!"
# What goes into the build: newer than dist/index.html means the build is stale.
BUILD_INPUTS = ("src", "public", "scripts", "index.html", "package.json", "package-lock.json")
BUILD_CONFIGS = ("vite.config.ts", "tsconfig.json")

ARTIFACTS = Path(
    os.environ.get("E2E_ARTIFACTS") or REPO_ROOT / ".state" / "e2e-artifacts"
) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def pytest_terminal_summary(terminalreporter) -> None:
    if ARTIFACTS.exists():
        terminalreporter.write_line(f"e2e screenshots: {ARTIFACTS}")


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for item in path.rglob("*"):
                if item.is_file():
                    newest = max(newest, item.stat().st_mtime)
    return newest


def _npm(*args: str) -> None:
    completed = subprocess.run(
        ["npm", *args], cwd=FRONTEND, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        pytest.fail(
            f"`npm {' '.join(args)}` in frontend/ failed ({completed.returncode}):\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}",
            pytrace=False,
        )


def build_dashboard() -> Path:
    """`frontend/dist`, built (npm ci + npm run build) when missing or older than its inputs."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(
            "the browser tests need Node.js and npm to build the dashboard: install them "
            "(`sudo make bootstrap` does, or `apt-get install nodejs npm`)",
            pytrace=False,
        )
    if not (FRONTEND / "package.json").is_file():
        pytest.fail("frontend/package.json is missing: no dashboard to test", pytrace=False)
    installed = FRONTEND / "node_modules" / ".package-lock.json"
    lock = FRONTEND / "package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund")
    inputs = [FRONTEND / name for name in (*BUILD_INPUTS, *BUILD_CONFIGS)]
    index = DIST / "index.html"
    if not index.is_file() or index.stat().st_mtime < _newest_mtime(inputs):
        _npm("run", "build")
    return DIST


@pytest.fixture(scope="session")
def dashboard_dist() -> Path:
    return build_dashboard()


@dataclass
class Gateway:
    """The e2e tests' own gateway, restartable on its port."""

    port: int
    env: dict[str, str]
    start: object  # run_service
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        self.process = self.start("gateway", self.env, port=self.port).process

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(20)


@pytest.fixture(scope="session")
def e2e_gateway(platform, run_service, dashboard_dist) -> Gateway:
    env = {
        **platform.env,
        "GATEWAY_DASHBOARD_DIR": str(dashboard_dist),
        "GATEWAY_RATE_LIMITS": json.dumps({"auth": {"requests": 10000, "window_s": 60}}),
    }
    gateway = Gateway(free_port(), env, run_service)
    gateway.run()
    return gateway


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: `sudo make bootstrap` "
            "installs it (or `apt-get install chromium`)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def offline_context(browser: Browser, gateway: Gateway, **options) -> BrowserContext:
    """A browser context that can reach the gateway and nothing else: the page must not need
    the internet (tiles, fonts, a CDN), and an attempt would hang rather than fail here."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.blocked = []  # type: ignore[attr-defined]

    async def only_the_gateway(route) -> None:
        url = route.request.url
        if url.startswith((gateway.url, gateway.url.replace("http", "ws"), "data:", "blob:")):
            await route.continue_()
        else:
            context.blocked.append(url)  # type: ignore[attr-defined]
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_gateway)
    return context


@pytest.fixture
async def context(browser, e2e_gateway, request) -> AsyncIterator[BrowserContext]:
    context = await offline_context(browser, e2e_gateway)
    yield context
    for number, page in enumerate(context.pages):
        await screenshot(page, f"{request.node.name}-end-{number}")
    await context.close()


@pytest.fixture
async def page(context) -> Page:
    return await context.new_page()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if not page.is_closed():
        await page.screenshot(path=str(path), full_page=False)
    return path


async def colour_shares(page: Page, png: bytes) -> list[float]:
    """The shares of a PNG's most common colours, largest first, decoded by the browser
    itself (no Pillow): a base map shows at least land and sea as large areas."""
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    return await page.evaluate(
        """async (src) => {
            const image = new Image();
            image.src = src;
            await image.decode();
            const canvas = document.createElement("canvas");
            canvas.width = image.width;
            canvas.height = image.height;
            const ctx = canvas.getContext("2d");
            ctx.drawImage(image, 0, 0);
            const pixels = ctx.getImageData(0, 0, image.width, image.height).data;
            const counts = new Map();
            let total = 0;
            for (let i = 0; i < pixels.length; i += 4 * 5) {
                const colour = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
                counts.set(colour, (counts.get(colour) || 0) + 1);
                total += 1;
            }
            return [...counts.values()].sort((a, b) => b - a).slice(0, 5).map((n) => n / total);
        }""",
        data_url,
    )


@dataclass
class Device:
    uid: str
    vehicle_id: str
    name: str
    client: mqtt.Client
    lon: float
    lat: float


@dataclass
class Org:
    """An org made through the API, its admin's token, and devices that publish over MQTT."""

    api: httpx.Client
    email: str
    token: str
    mqtt_port: int
    devices: list[Device] = field(default_factory=list)
    _driving: threading.Event = field(default_factory=threading.Event)
    _driver: threading.Thread | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, path: str, body: dict) -> dict:
        response = self.api.post(path, json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()

    def add_user(self, role: str) -> str:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        self.post(
            "/users",
            {"email": email, "password": PASSWORD, "full_name": role.title(), "role": role},
        )
        return email

    def add_vehicle(self, name: str, lon: float, lat: float, **extra) -> Device:
        vehicle = self.post(
            "/vehicles",
            {"name": name, "plate": f"E2E-{uuid.uuid4().hex[:6]}", "type": "truck", **extra},
        )
        uid = f"e2e-{uuid.uuid4().hex[:12]}"
        device = self.post("/devices", {"uid": uid, "name": name, "vehicle_id": vehicle["id"]})
        credentials = device["credentials"]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
        client.username_pw_set(credentials["username"], credentials["password"])
        client.connect("127.0.0.1", self.mqtt_port)
        client.loop_start()
        added = Device(uid, vehicle["id"], name, client, lon, lat)
        self.devices.append(added)
        return added

    def publish(self, device: Device, *, speed_kph: float = 30.0, **extra) -> None:
        payload = {
            "ts": datetime.now(UTC).isoformat(),
            "lat": device.lat,
            "lon": device.lon,
            "speed": speed_kph,
            "heading": 90,
            "battery": 80,
            "ignition": True,
            **extra,
        }
        info = device.client.publish(f"fleet/{device.uid}/telemetry", json.dumps(payload), qos=1)
        info.wait_for_publish(30)

    def drive(self, step_deg: float = 0.0004, every_s: float = 1.0) -> None:
        """Every device moves east by `step_deg` each `every_s`, until `park()`."""

        def loop() -> None:
            while not self._driving.wait(every_s):
                for device in list(self.devices):
                    device.lon += step_deg
                    self.publish(device)

        self._driving.clear()
        self._driver = threading.Thread(target=loop, daemon=True)
        self._driver.start()

    def park(self) -> None:
        self._driving.set()
        if self._driver is not None:
            self._driver.join(10)
            self._driver = None

    def close(self) -> None:
        self.park()
        for device in self.devices:
            device.client.loop_stop()
            device.client.disconnect()


@pytest.fixture
def make_org(e2e_gateway, platform):
    """Factory: a new org registered through the API (`register=False` for one the test
    registers through the page: then give its admin's email to `adopt`)."""
    made: list[Org] = []
    api = httpx.Client(base_url=f"{e2e_gateway.url}/api/v1", timeout=30)

    def sign_in(email: str) -> str:
        response = api.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def factory(email: str | None = None) -> Org:
        if email is None:
            email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
            response = api.post(
                "/auth/register",
                json={
                    "org_name": f"E2E {email[6:14]}",
                    "email": email,
                    "password": PASSWORD,
                    "full_name": "Admin",
                },
            )
            assert response.status_code == 201, response.text
        org = Org(api, email, sign_in(email), platform.mqtt_port)
        made.append(org)
        return org

    yield factory
    for org in made:
        org.close()
    api.close()


async def sign_in(page: Page, gateway: Gateway, email: str) -> None:
    await page.goto(gateway.url + "/")
    await page.get_by_test_id("signin-email").fill(email)
    await page.get_by_test_id("signin-password").fill(PASSWORD)
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("live-status").wait_for()


async def eventually(check, timeout_s: float = 30.0, every_s: float = 0.25):
    """Poll an async `check` until it returns something truthy (then return that)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never true within {timeout_s} s: {check.__name__}")
        await asyncio.sleep(every_s)
