"""The `fleet-sim` command: simulated vehicles that drive, report over MQTT and obey the
downlink commands sent to them through the API (docs/commands.md)."""

import argparse
import collections
import json
import math
import random
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet_location.sim.trackers import DEFAULT_PORTS, TCP_PROTOCOLS, TcpTracker, new_imei

EARTH_RADIUS_M = 6_371_008.8
HEADINGS = (0.0, 90.0, 180.0, 270.0)


@dataclass
class Car:
    """One simulated vehicle: where it is and what it is doing."""

    uid: str
    lat: float
    lon: float
    speed_limit_kph: float
    heading_deg: float = field(default_factory=lambda: random.choice(HEADINGS))
    speed_kph: float = 0.0
    cruise_kph: float = 40.0
    ignition: bool = True
    odometer_km: float = 0.0
    battery_pct: float = field(default_factory=lambda: random.uniform(60, 100))
    block_left_m: float = field(default_factory=lambda: random.uniform(100, 400))
    hold_s: float = 0.0  # standing still (lights or parked) for this long
    # Seconds between reports (None: every tick); `set_interval` changes it.
    report_every_s: float | None = None
    engine_stopped: bool = False  # by `engine_stop`, until `engine_resume`
    last_report: float = -math.inf
    # Commands received on the network thread, obeyed on the main one.
    inbox: collections.deque = field(default_factory=collections.deque)

    def obey(self, command: dict) -> tuple[str, str]:
        """Carry out one command; the (status, message) to answer with."""
        kind, params = command.get("type"), command.get("params") or {}
        if kind == "set_interval":
            self.report_every_s = float(params["interval_s"])
            return "acknowledged", f"reporting every {self.report_every_s:g} s"
        if kind == "engine_stop":
            self.engine_stopped, self.speed_kph, self.ignition = True, 0.0, False
            return "acknowledged", "engine stopped"
        if kind == "engine_resume":
            self.engine_stopped, self.ignition = False, True
            return "acknowledged", "engine may start"
        if kind == "request_position":
            self.last_report = -math.inf
            return "acknowledged", "position sent"
        if kind == "reboot":
            return "acknowledged", "rebooted"
        return "failed", f"{kind} is not supported by the simulator"

    def due(self, now_s: float) -> bool:
        if self.report_every_s is not None and now_s - self.last_report < self.report_every_s:
            return False
        self.last_report = now_s
        return True

    def step(self, dt_s: float, rng: random.Random) -> None:
        if self.engine_stopped:
            self.speed_kph = 0.0
            return
        if self.hold_s > 0:
            self.hold_s -= dt_s
            self.speed_kph = 0.0
            if self.hold_s <= 0:
                self.ignition = True
                self.cruise_kph = self._pick_cruise(rng)
            return
        # Accelerate / brake towards the cruise speed.
        target = self.cruise_kph
        self.speed_kph += max(-15.0, min(8.0, target - self.speed_kph)) * dt_s
        distance_m = self.speed_kph / 3.6 * dt_s
        self._move(distance_m)
        self.odometer_km += distance_m / 1000
        self.block_left_m -= distance_m
        if self.block_left_m <= 0:  # an intersection
            self.block_left_m = rng.uniform(150, 600)
            roll = rng.random()
            if roll < 0.02:
                self.hold_s, self.ignition = rng.uniform(120, 300), False  # parks
            elif roll < 0.15:
                self.hold_s = rng.uniform(15, 60)  # red light, engine running
            if rng.random() < 0.35:
                self.heading_deg = (self.heading_deg + rng.choice((90.0, -90.0))) % 360
            self.cruise_kph = self._pick_cruise(rng)
        self.battery_pct = max(5.0, self.battery_pct - 0.001 * dt_s)

    def _pick_cruise(self, rng: random.Random) -> float:
        if rng.random() < 0.1:
            return self.speed_limit_kph * rng.uniform(1.1, 1.4)  # speeding
        return self.speed_limit_kph * rng.uniform(0.5, 0.95)

    def _move(self, distance_m: float) -> None:
        heading = math.radians(self.heading_deg)
        self.lat += math.degrees(distance_m * math.cos(heading) / EARTH_RADIUS_M)
        self.lon += math.degrees(
            distance_m * math.sin(heading) / (EARTH_RADIUS_M * math.cos(math.radians(self.lat)))
        )

    def payload(self) -> bytes:
        return json.dumps(
            {
                "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "lat": round(self.lat, 7),
                "lon": round(self.lon, 7),
                "speed": round(self.speed_kph, 1),
                "heading": round(self.heading_deg, 1),
                "ignition": self.ignition,
                "battery": round(self.battery_pct, 1),
                "odometer": round(self.odometer_km, 3),
            }
        ).encode()


class Api:
    """The public API through the gateway."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=30.0)
        self.headers: dict[str, str] = {}

    def _ok(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            sys.exit(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text}"
            )
        return response.json()

    def login(self, email: str, password: str) -> None:
        body = self._ok(
            self.http.post("/api/v1/auth/login", json={"email": email, "password": password})
        )
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}

    def register(self) -> tuple[str, str]:
        email = f"demo-{secrets.token_hex(4)}@example.com"
        password = f"Demo-{secrets.token_urlsafe(12)}1!"
        body = self._ok(
            self.http.post(
                "/api/v1/auth/register",
                json={
                    "org_name": "Demo fleet",
                    "email": email,
                    "password": password,
                    "full_name": "Demo dispatcher",
                },
            )
        )
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}
        return email, password

    def create_vehicle_and_device(
        self, index: int, limit_kph: float, protocol: str = "mqtt", uid: str | None = None
    ) -> dict:
        tag = secrets.token_hex(3)
        vehicle = self._ok(
            self.http.post(
                "/api/v1/vehicles",
                headers=self.headers,
                json={
                    "name": f"Demo truck {index + 1}",
                    "plate": f"SIM-{tag.upper()}",
                    "speed_limit_kph": limit_kph,
                },
            )
        )
        return self._ok(
            self.http.post(
                "/api/v1/devices",
                headers=self.headers,
                json={
                    "uid": uid or f"sim-{tag}-{index}",
                    "name": f"Demo tracker {index + 1}",
                    "protocol": protocol,
                    "vehicle_id": vehicle["id"],
                },
            )
        )


def connect(car: Car, credentials: dict, host: str | None, port: int | None) -> mqtt.Client:
    uid = credentials["username"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv311)
    client.username_pw_set(uid, credentials["password"])
    client.will_set(f"fleet/{uid}/status", "offline", qos=1, retain=True)

    def on_connect(c, *_args) -> None:
        # Subscribed before saying online: the service resends open commands on `online`.
        c.subscribe(f"fleet/{uid}/commands", qos=1)
        c.publish(f"fleet/{uid}/status", "online", 1, True)

    def on_message(_c, _u, message: mqtt.MQTTMessage) -> None:
        try:
            command = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(command, dict) and "id" in command:
            car.inbox.append(command)

    client.on_connect = on_connect
    client.on_message = on_message
    client.max_inflight_messages_set(100)
    client.connect_async(host or credentials["mqtt_host"], port or credentials["mqtt_port"])
    client.loop_start()
    return client


def answer_commands(car: Car, client: mqtt.Client) -> None:
    """Obey what arrived, answering `delivered` then the outcome (a repeat is obeyed again:
    every command here is safe to repeat)."""
    topic = f"fleet/{car.uid}/commands/result"
    while car.inbox:
        command = car.inbox.popleft()
        client.publish(topic, json.dumps({"id": command["id"], "status": "delivered"}), qos=1)
        try:
            status, message = car.obey(command)
        except (KeyError, TypeError, ValueError) as exc:
            status, message = "failed", f"bad params: {exc}"
        answer = {"id": command["id"], "status": status, "message": message}
        client.publish(topic, json.dumps(answer), qos=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleet-sim", description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="gateway URL")
    parser.add_argument("--vehicles", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="positions/s per vehicle")
    parser.add_argument("--email", help="sign in as this dispatcher or admin")
    parser.add_argument("--password")
    parser.add_argument("--mqtt-host", help="override the broker host given with credentials")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument(
        "--protocol",
        choices=("mqtt", *TCP_PROTOCOLS),
        default="mqtt",
        help="how the devices report: MQTT, or Teltonika / GT06 hardware over TCP",
    )
    parser.add_argument("--tracker-host", help="the location service's host (default: --api's)")
    parser.add_argument("--tracker-port", type=int, help="default 5027 (teltonika), 5023 (gt06)")
    parser.add_argument("--center", default="10.7769,106.7009", help="lat,lon of the city")
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.vehicles < 1 or args.rate <= 0:
        parser.error("--vehicles and --rate must be positive")
    rng = random.Random(args.seed)
    api = Api(args.api)
    if args.email:
        api.login(args.email, args.password or "")
    else:
        email, password = api.register()
        print(f"registered a demo org: sign in as {email} / {password}", flush=True)
    lat0, lon0 = (float(v) for v in args.center.split(","))
    cars, clients = [], []
    for i in range(args.vehicles):
        limit = rng.choice((50.0, 60.0, 80.0))
        uid = new_imei() if args.protocol in TCP_PROTOCOLS else None
        device = api.create_vehicle_and_device(i, limit, args.protocol, uid)
        cars.append(
            Car(
                device["uid"],
                lat0 + rng.uniform(-0.03, 0.03),
                lon0 + rng.uniform(-0.03, 0.03),
                limit,
            )
        )
        if args.protocol in TCP_PROTOCOLS:
            host = args.tracker_host or urlsplit(args.api).hostname or "127.0.0.1"
            port = args.tracker_port or DEFAULT_PORTS[args.protocol]
            clients.append(TcpTracker(args.protocol, device["uid"], host, port))
        else:
            clients.append(connect(cars[-1], device["credentials"], args.mqtt_host, args.mqtt_port))
    print(f"driving {len(cars)} vehicles at {args.rate}/s each; Ctrl-C stops", flush=True)

    stop = threading.Event()
    # Restored afterwards: `main` also runs inside other programs (the tests).
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        interval = 1.0 / args.rate
        ends_at = time.monotonic() + args.duration if args.duration else math.inf
        next_tick = time.monotonic()
        while not stop.is_set() and time.monotonic() < ends_at:
            now_s = time.monotonic()
            for car, client in zip(cars, clients, strict=True):
                if isinstance(client, TcpTracker):
                    client.poll(car)
                else:
                    answer_commands(car, client)
                car.step(interval, rng)
                if car.due(now_s):
                    if isinstance(client, TcpTracker):
                        client.send(car)
                    else:
                        client.publish(f"fleet/{car.uid}/telemetry", car.payload(), qos=1)
            next_tick += interval
            stop.wait(max(0.0, next_tick - time.monotonic()))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for car, client in zip(cars, clients, strict=True):
        if isinstance(client, TcpTracker):
            client.close()
            continue
        client.publish(f"fleet/{car.uid}/status", "offline", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
