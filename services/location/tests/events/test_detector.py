"""Event detection through the `PositionObserver` contract, against real Redis and PostGIS."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from fleet_common.db import create_engine, create_sessionmaker
from fleet_common.redis import EVENTS_STREAM, METERS_FIELD, detection_state_key, latest_key
from fleet_location.config import Settings
from fleet_location.events import EventDetector, create_event_detector
from fleet_location.geofences import service
from fleet_location.geofences.schemas import GeofenceCreate
from fleet_location.ingest.devices import DeviceDirectory
from fleet_location.ingest.parsing import DeviceInfo, MaintenanceDuePoint
from fleet_location.positions.model import Position
from fleet_location.trips.detection import Fix, analyse

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[106.0, 10.0], [106.01, 10.0], [106.01, 10.01], [106.0, 10.01], [106.0, 10.0]]
    ],
}
CIRCLE = {"type": "Circle", "center": [106.05, 10.005], "radius_m": 300}


@pytest.fixture(scope="module")
async def env(stack, migrated_database):
    settings = Settings(
        database_url=migrated_database("location"),
        redis_url=stack.redis.url,
        idle_after_s=300,
        offline_after_s=600,
        overspeed_hysteresis_kph=5,
        overspeed_min_duration_s=10,
        stop_speed_kph=3,
        min_stop_duration_s=180,
        low_battery_pct=20,
        low_battery_hysteresis_pct=5,
    )
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(stack.redis.url)
    yield settings, create_sessionmaker(engine), redis
    await redis.aclose()
    await engine.dispose()


SPEED_LIMITS: dict[uuid.UUID, float] = {}


def make_detector(env) -> EventDetector:
    settings, sessionmaker, redis = env
    return create_event_detector(settings, redis, sessionmaker, SPEED_LIMITS.get)


@pytest.fixture
def detector(env) -> EventDetector:
    return make_detector(env)


class Device:
    def __init__(self, org_id: uuid.UUID | None = None, speed_limit_kph: float | None = None):
        self.org_id = org_id or uuid.uuid4()
        self.device_id = uuid.uuid4()
        self.vehicle_id = uuid.uuid4()
        self.t = 0
        if speed_limit_kph is not None:
            SPEED_LIMITS[self.device_id] = speed_limit_kph

    def at(self, lat=9.9, lon=105.9, *, dt_s=10, **fields) -> Position:
        self.t += dt_s
        return Position(
            device_id=self.device_id,
            vehicle_id=self.vehicle_id,
            org_id=self.org_id,
            recorded_at=T0 + timedelta(seconds=self.t),
            lat=lat,
            lon=lon,
            **fields,
        )


async def events_of(redis: Redis, device: Device, type_: str | None = None) -> list[dict]:
    found = []
    for _id, fields in await redis.xrange(EVENTS_STREAM):
        event = json.loads(fields[b"event"])
        if event["device_id"] == str(device.device_id) and type_ in (None, event["type"]):
            found.append(event)
    return found


async def add_geofence(env, org_id, name, geometry, **kw) -> str:
    _settings, sessionmaker, _redis = env
    async with sessionmaker() as session:
        geofence = await service.create_geofence(
            session, org_id, GeofenceCreate(name=name, geometry=geometry, **kw)
        )
    return str(geofence.id)


async def test_polygon_and_circle_enter_and_exit_exactly_once(env, detector):
    _s, _sm, redis = env
    car = Device()
    square = await add_geofence(env, car.org_id, "Depot", SQUARE)
    circle = await add_geofence(env, car.org_id, "Customer", CIRCLE)
    drive = [
        car.at(9.99, 105.99),
        car.at(10.005, 106.005),  # into the square
        car.at(10.006, 106.006),
        car.at(10.005, 106.02),  # out
        car.at(10.005, 106.049),  # into the circle (~110 m from its centre)
        car.at(10.0051, 106.0502),
        car.at(10.005, 106.06),  # out (~1.1 km)
    ]
    await detector.positions_committed(drive[:3])
    await detector.positions_committed(drive[:3])  # the pipeline replays a batch
    await make_detector(env).positions_committed(drive[3:5])  # another replica / a restart
    await detector.positions_committed(drive[3:])
    events = [
        (e["type"], e["details"]["geofence_id"])
        for e in await events_of(redis, car)
        if e["type"].startswith("geofence")
    ]
    assert events == [
        ("geofence_enter", square),
        ("geofence_exit", square),
        ("geofence_enter", circle),
        ("geofence_exit", circle),
    ]
    enter = (await events_of(redis, car, "geofence_enter"))[0]
    assert enter["org_id"] == str(car.org_id)
    assert enter["vehicle_id"] == str(car.vehicle_id)
    assert enter["position"]["lat"] == 10.005
    assert enter["ts"] == "2026-11-22T08:00:20Z"
    assert enter["details"]["geofence_name"] == "Depot"
    uuid.UUID(enter["id"])


async def test_concurrent_replicas_fire_once(env):
    _s, _sm, redis = env
    car = Device()
    await add_geofence(env, car.org_id, "Yard", SQUARE)
    batch = [car.at(9.99, 105.99), car.at(10.005, 106.005)]
    replicas = [make_detector(env) for _ in range(4)]
    await asyncio.gather(*(r.positions_committed(batch) for r in replicas))
    assert len(await events_of(redis, car, "geofence_enter")) == 1


async def test_geofence_change_reaches_other_replicas(env):
    _s, _sm, redis = env
    replica = make_detector(env)
    replica.start()
    try:
        car = Device()
        await replica.positions_committed([car.at(10.005, 106.005)])  # builds an empty index
        assert await events_of(redis, car) == []
        gid = await add_geofence(env, car.org_id, "New", SQUARE)
        await service.publish_geofences_changed(redis, car.org_id)
        async with asyncio.timeout(5):
            while car.org_id in replica.geofences._orgs:  # noqa: ASYNC110 - set by another task
                await asyncio.sleep(0.02)
        await replica.positions_committed([car.at(10.006, 106.006)])
        [enter] = await events_of(redis, car, "geofence_enter")
        assert enter["details"]["geofence_id"] == gid
    finally:
        await replica.stop()


async def test_overspeed_alerted_while_speeding_then_closed(env, detector):
    """Minimum duration 10 s (the env's setting), fixes 10 s apart: an episode is reported on
    its second fix over the limit, while it lasts, and closed with its maximum when it ends."""
    _s, _sm, redis = env
    car = Device(speed_limit_kph=80)
    await detector.positions_committed([car.at(speed_kph=s) for s in (70, 85, 78)])
    [started] = await events_of(redis, car, "overspeed")  # still over the limit (78 > 75)
    assert started["details"]["phase"] == "started"
    assert started["details"]["speed_kph"] == 78
    assert started["details"]["limit_kph"] == 80
    assert started["details"]["limit_source"] == "vehicle"
    assert started["details"]["started_at"] == "2026-11-22T08:00:20Z"
    assert started["details"]["duration_s"] == 10
    assert started["ts"] == "2026-11-22T08:00:30Z"

    await detector.positions_committed([car.at(speed_kph=s) for s in (95, 76, 82, 74, 60)])
    started_, ended = await events_of(redis, car, "overspeed")
    assert started_ == started  # no second "started" for the same episode
    assert ended["details"]["phase"] == "ended"
    assert ended["details"]["episode_id"] == started["details"]["episode_id"]
    assert ended["details"]["max_speed_kph"] == 95
    assert ended["details"]["ended_at"] == "2026-11-22T08:01:10Z"
    assert ended["details"]["duration_s"] == 50
    assert ended["details"]["ended_by"] == "slowed"
    assert ended["position"]["speed_kph"] == 95


async def test_overspeed_shorter_than_the_minimum_duration_raises_nothing(env, detector):
    _s, _sm, redis = env
    car = Device(speed_limit_kph=80)
    # One fix over the limit, then back under it by the margin within 10 s: no event.
    await detector.positions_committed(
        [car.at(speed_kph=70), car.at(speed_kph=120, dt_s=4), car.at(speed_kph=60, dt_s=4)]
    )
    assert await events_of(redis, car, "overspeed") == []
    # The next episode lasts long enough: one start, one end, each its own episode id.
    await detector.positions_committed([car.at(speed_kph=s, dt_s=6) for s in (90, 90, 90, 60)])
    started, ended = await events_of(redis, car, "overspeed")
    assert started["details"]["started_at"] == "2026-11-22T08:00:24Z"
    assert started["details"]["duration_s"] == 12
    assert ended["details"]["episode_id"] == started["details"]["episode_id"]


async def test_overspeed_at_the_first_fix_with_zero_minimum(env):
    settings, sessionmaker, redis = env
    detector = create_event_detector(
        settings.model_copy(update={"overspeed_min_duration_s": 0}),
        redis,
        sessionmaker,
        SPEED_LIMITS.get,
    )
    car = Device(speed_limit_kph=50)
    await detector.positions_committed([car.at(speed_kph=40), car.at(speed_kph=51)])
    [started] = await events_of(redis, car, "overspeed")
    assert started["details"]["speed_kph"] == 51
    assert started["details"]["duration_s"] == 0


async def test_geofence_speed_limit(env, detector):
    _s, _sm, redis = env
    car = Device(speed_limit_kph=100)
    gid = await add_geofence(env, car.org_id, "School", SQUARE, speed_limit_kph=30)
    await detector.positions_committed(
        [
            car.at(9.99, 105.99, speed_kph=60),
            car.at(10.005, 106.005, speed_kph=45),
            car.at(10.0055, 106.0055, speed_kph=40),
            car.at(10.006, 106.006, speed_kph=20),
        ]
    )
    _started, event = await events_of(redis, car, "overspeed")
    assert event["details"]["limit_source"] == "geofence"
    assert event["details"]["geofence_id"] == gid
    assert event["details"]["max_speed_kph"] == 45


async def test_idle_after_configured_time(env, detector):
    _s, _sm, redis = env
    car = Device()
    stay = dict(lat=10.1, lon=106.1, speed_kph=0, ignition=True)
    await detector.positions_committed([car.at(**stay, dt_s=100) for _ in range(3)])
    assert await events_of(redis, car, "idle") == []
    await detector.positions_committed([car.at(**stay, dt_s=100) for _ in range(3)])
    [idle] = await events_of(redis, car, "idle")
    assert idle["details"]["duration_s"] == 300
    # Moving re-arms it; ignition off never idles.
    await detector.positions_committed(
        [car.at(10.2, 106.2, speed_kph=40, ignition=True)]
        + [car.at(10.2, 106.2, speed_kph=0, ignition=False, dt_s=200) for _ in range(3)]
        + [car.at(10.2, 106.2, speed_kph=0, ignition=True, dt_s=200) for _ in range(3)]
    )
    assert len(await events_of(redis, car, "idle")) == 2


async def test_low_battery_once_per_crossing(env, detector):
    _s, _sm, redis = env
    car = Device()
    levels = [50, 19, 15, 18, 22, 12, 30, 10]
    await detector.positions_committed([car.at(battery_pct=b) for b in levels])
    events = await events_of(redis, car, "low_battery")
    assert [e["details"]["battery_pct"] for e in events] == [19, 10]


def vehicles(status: str) -> float:
    return REGISTRY.get_sample_value("fleet_vehicles", {"status": status})


async def test_the_sweep_counts_vehicles_by_the_status_the_api_gives_them(env, detector):
    settings, _sm, redis = env
    now = T0.timestamp() + 3600
    await detector.sweep_offline(now)
    before = {status: vehicles(status) for status in ("moving", "stopped", "offline")}
    org = uuid.uuid4()
    fresh = (T0 + timedelta(seconds=3600 - 60)).isoformat()
    silent = (T0 + timedelta(seconds=3600 - settings.offline_after_s - 1)).isoformat()
    latest = {
        "driving": {"recorded_at": fresh, "speed_kph": 50, "ignition": True},
        "parked": {"recorded_at": fresh, "speed_kph": 0, "ignition": False},
        "towed": {"recorded_at": fresh, "speed_kph": 30, "ignition": False},
        "silent": {"recorded_at": silent, "speed_kph": 50},
    }
    for document in latest.values():
        await redis.hset(latest_key(org), str(uuid.uuid4()), json.dumps(document))
    await detector.sweep_offline(now)
    counted = {status: vehicles(status) - before[status] for status in before}
    assert counted == {"moving": 1, "stopped": 2, "offline": 1}
    await redis.delete(latest_key(org))


async def test_offline_after_silence_and_back_online(env, detector):
    settings, _sm, redis = env
    car = Device()
    last = car.at(speed_kph=50)
    await detector.positions_committed([last])
    latest = {"recorded_at": last.recorded_at.isoformat(), "vehicle_id": str(car.vehicle_id)}
    await redis.hset(latest_key(car.org_id), str(car.device_id), json.dumps(latest))
    now = last.recorded_at.timestamp()
    await detector.sweep_offline(now + settings.offline_after_s - 1)
    assert await events_of(redis, car, "device_offline") == []
    await detector.sweep_offline(now + settings.offline_after_s + 1)
    await make_detector(env).sweep_offline(now + settings.offline_after_s + 30)
    [offline] = await events_of(redis, car, "device_offline")
    assert offline["details"]["source"] == "silence"
    assert offline["vehicle_id"] == str(car.vehicle_id)
    assert offline["details"]["silent_s"] == settings.offline_after_s + 1

    await detector.positions_committed([car.at(speed_kph=0, dt_s=3600)])
    [online] = await events_of(redis, car, "device_online")
    assert online["details"]["source"] == "position"
    # The sweep and the ingest path share one cached state for the device (else each would
    # find the other's write stale and read the state again).
    assert [key for key in detector._states if str(key) == str(car.device_id)] == [car.device_id]


async def test_status_topic_online_offline(env, detector):
    _s, _sm, redis = env
    car = Device()
    ids = dict(device_id=car.device_id, vehicle_id=car.vehicle_id, org_id=car.org_id)
    await detector.device_status(**ids, online=True, at=T0)
    await detector.device_status(**ids, online=True, at=T0 + timedelta(seconds=1))
    await detector.device_status(**ids, online=False, at=T0 + timedelta(seconds=2))
    await detector.device_status(**ids, online=False, at=T0 + timedelta(seconds=3))
    types = [e["type"] for e in await events_of(redis, car)]
    assert types == ["device_online", "device_offline"]


async def test_status_offline_closes_an_overspeed_episode(env, detector):
    _s, _sm, redis = env
    car = Device(speed_limit_kph=50)
    await detector.positions_committed([car.at(speed_kph=70), car.at(speed_kph=90)])
    [started] = await events_of(redis, car, "overspeed")
    await detector.device_status(
        device_id=car.device_id,
        vehicle_id=car.vehicle_id,
        org_id=car.org_id,
        online=False,
        at=T0 + timedelta(minutes=5),
    )
    _started, event = await events_of(redis, car, "overspeed")
    assert event["details"]["episode_id"] == started["details"]["episode_id"]
    assert event["details"]["max_speed_kph"] == 90
    assert event["details"]["ended_by"] == "offline"


async def test_stream_is_capped(env):
    settings, _sm, redis = env
    assert settings.events_stream_maxlen >= 1000
    info = await redis.xinfo_stream(EVENTS_STREAM)
    assert info["length"] <= settings.events_stream_maxlen + 100


async def test_events_carry_the_vehicle_group_of_the_cached_device(env):
    """The group comes from the device directory (the vehicle service's lookup); a device the
    cache has dropped (a `fleet:devices` message) keeps the last group known until it is
    looked up again."""
    settings, sessionmaker, redis = env
    async with httpx.AsyncClient() as http:
        directory = DeviceDirectory(
            vehicle_url="http://127.0.0.1:9",
            internal_token="unused",
            redis=redis,
            http=http,
            ttl_s=60,
            negative_ttl_s=5,
        )
        detector = create_event_detector(
            settings, redis, sessionmaker, SPEED_LIMITS.get, directory.cached_device
        )
        car = Device()
        await add_geofence(env, car.org_id, "Depot", SQUARE)

        def cache(group: str | None) -> None:
            info = DeviceInfo(
                car.device_id,
                f"grp-{car.device_id.hex[:8]}",
                car.vehicle_id,
                car.org_id,
                vehicle_group=group,
            )
            directory._on_message(json.dumps({"uid": info.uid, "device_id": str(car.device_id)}))
            directory._store(info.uid, info)

        cache("North")
        outside = car.at(9.99, 105.99)
        last = car.at(10.005, 106.005)
        await detector.positions_committed([outside, last])
        [enter] = await events_of(redis, car, "geofence_enter")
        assert enter["vehicle_group"] == "North"

        # The vehicle changed; the cache dropped the device; it falls silent.
        directory._on_message(json.dumps({"device_id": str(car.device_id)}))
        assert directory.cached_device(car.device_id) is None
        latest = {"recorded_at": last.recorded_at.isoformat(), "vehicle_id": str(car.vehicle_id)}
        await redis.hset(latest_key(car.org_id), str(car.device_id), json.dumps(latest))
        await detector.sweep_offline(last.recorded_at.timestamp() + settings.offline_after_s + 1)
        [offline] = await events_of(redis, car, "device_offline")
        assert offline["vehicle_group"] == "North"

        # Looked up again with its new group (or none), its next events carry that.
        cache("South")
        await detector.positions_committed([car.at(9.99, 105.99, dt_s=3600)])
        [_online] = await events_of(redis, car, "device_online")
        [exit_] = await events_of(redis, car, "geofence_exit")
        assert exit_["vehicle_group"] == _online["vehicle_group"] == "South"
        cache(None)
        await detector.positions_committed([car.at(10.005, 106.005)])
        assert [e["vehicle_group"] for e in await events_of(redis, car, "geofence_enter")] == [
            "North",
            None,
        ]
        # Every field of the event contract is still there.
        assert set(enter) == {
            "id",
            "type",
            "org_id",
            "vehicle_id",
            "device_id",
            "ts",
            "position",
            "details",
            "vehicle_group",
        }


def recorded_drive(car: Device) -> list[Position]:
    """Parked, ignition on, a drive with a short halt, a stop, a second drive, parked again."""
    lat, lon = 10.3, 106.3
    drive: list[Position] = []

    def fix(speed: float, ignition: bool, dt_s: float = 10, **attrs) -> None:
        nonlocal lon
        lon += speed / 3.6 * dt_s / 109_000  # ~109 km per degree of longitude at 10.3 N
        drive.append(car.at(lat, lon, dt_s=dt_s, speed_kph=speed, ignition=ignition, attrs=attrs))

    for _ in range(4):
        fix(0, False, 60)  # parked long enough to be a stop
    fix(0, True)  # ignition on
    for _ in range(12):
        fix(40, True)
    for _ in range(6):
        fix(0, True)  # a 60 s halt at a light: no stop
    for _ in range(12):
        fix(50, True)
    fix(0, False)  # ignition off: the stop begins here
    for _ in range(5):
        fix(0, False, 60)
    fix(0, True)
    for _ in range(10):
        fix(30, True, alarm="sos" if _ in (4, 5) else None)
    fix(0, False)
    for _ in range(4):
        fix(0, False, 60, alarm=["power_cut", "tamper"] if _ == 2 else None)
    return drive


async def test_recorded_drive_ignition_trips_and_alarms(env):
    settings, _sm, redis = env
    car = Device()
    drive = recorded_drive(car)
    detector = make_detector(env)
    # In ingest-sized pieces, one replayed, as the pipeline hands them over.
    for start in range(0, len(drive), 7):
        await detector.positions_committed(drive[start : start + 7])
    await detector.positions_committed(drive[7:14])
    events = await events_of(redis, car)
    types = [e["type"] for e in events if e["type"] != "device_online"]
    assert types == [
        "ignition_on",
        "trip_start",
        "ignition_off",
        "trip_end",
        "ignition_on",
        "trip_start",
        "alarm",
        "ignition_off",
        "trip_end",
        "alarm",
        "alarm",
    ]
    off = next(e for e in events if e["type"] == "ignition_off")
    assert off["details"]["on_duration_s"] == 310  # 31 fixes 10 s apart
    alarms = [e["details"]["alarm"] for e in events if e["type"] == "alarm"]
    assert alarms == ["sos", "power_cut", "tamper"]

    # The same trips as the trips API finds in this history.
    analysis = analyse(
        (Fix(p.recorded_at, p.lat, p.lon, p.speed_kph, p.ignition) for p in drive),
        stop_speed_kph=settings.stop_speed_kph,
        min_stop_duration_s=settings.min_stop_duration_s,
    )
    starts = [e["details"] for e in events if e["type"] == "trip_start"]
    ends = [e["details"] for e in events if e["type"] == "trip_end"]
    assert len(analysis.trips) == len(starts) == len(ends) == 2
    for trip, start, end in zip(analysis.trips, starts, ends, strict=True):
        iso = trip.start_time.isoformat().replace("+00:00", "Z")
        assert start["started_at"] == end["started_at"] == iso
        assert end["ended_at"] == trip.end_time.isoformat().replace("+00:00", "Z")
        assert end["duration_s"] == trip.duration_s
        assert abs(end["distance_m"] - trip.distance_m) < 1
        assert end["max_speed_kph"] == trip.max_speed_kph


async def test_first_ignition_known_is_no_change_and_a_long_silence_ends_a_trip(env, detector):
    _s, _sm, redis = env
    car = Device()
    await detector.positions_committed(
        [car.at(10.4, 106.4 + i * 0.001, speed_kph=40, ignition=True) for i in range(3)]
    )
    assert [e["type"] for e in await events_of(redis, car)] == ["trip_start"]
    # Nothing heard for an hour: the trip ended at the last fix before the silence.
    await detector.positions_committed([car.at(10.5, 106.5, speed_kph=0, dt_s=3600)])
    [end] = await events_of(redis, car, "trip_end")
    assert end["details"]["ended_at"] == "2026-11-22T08:00:30Z"


def maintained(car: Device, *due: tuple[str, str, float], **meters) -> DeviceInfo:
    """The cached device of `car`, its vehicle's entered meters and maintenance due points."""
    points = tuple(MaintenanceDuePoint(id_, id_, meter, next_due) for id_, meter, next_due in due)
    return DeviceInfo(car.device_id, "m", car.vehicle_id, car.org_id, maintenance=points, **meters)


def detector_of(env, infos: dict[uuid.UUID, DeviceInfo]) -> EventDetector:
    settings, sessionmaker, redis = env
    return create_event_detector(settings, redis, sessionmaker, SPEED_LIMITS.get, infos.get)


async def test_maintenance_due_once_per_due_point_by_the_devices_odometer(env):
    _s, _sm, redis = env
    car = Device()
    infos = {car.device_id: maintained(car, ("oil", "odometer_km", 1000.0), odometer_km=10.0)}
    detector = detector_of(env, infos)
    await detector.positions_committed([car.at(odometer_km=km) for km in (990.0, 999.9)])
    assert await events_of(redis, car, "maintenance_due") == []
    # Crossing it raises it once, however many fixes follow (a replayed batch included).
    crossing = [car.at(odometer_km=km) for km in (1000.2, 1003.0, 1010.0)]
    await detector.positions_committed(crossing)
    await detector.positions_committed(crossing)
    [due] = await events_of(redis, car, "maintenance_due")
    assert due["details"] == {
        "maintenance_id": "oil",
        "name": "oil",
        "meter": "odometer_km",
        "next_due": 1000.0,
        "reading": 1000.2,
    }
    assert due["position"]["recorded_at"] == crossing[0].recorded_at.isoformat().replace(
        "+00:00", "Z"
    )
    meters = json.loads(await redis.hget(detection_state_key(car.device_id), METERS_FIELD))
    assert meters == {"vehicle_id": str(car.vehicle_id), "odometer_km": 1010.0, "engine_hours": 0}

    # Serviced at 1010 km with a 5000 km interval: due again at 6010, not before.
    infos[car.device_id] = maintained(car, ("oil", "odometer_km", 6010.0), odometer_km=10.0)
    await detector.positions_committed([car.at(odometer_km=km) for km in (1020.0, 6009.0)])
    assert len(await events_of(redis, car, "maintenance_due")) == 1
    await detector.positions_committed([car.at(odometer_km=km) for km in (6010.0, 6011.0)])
    assert [e["details"]["next_due"] for e in await events_of(redis, car, "maintenance_due")] == [
        1000.0,
        6010.0,
    ]


async def test_maintenance_due_by_counted_distance_and_engine_hours(env):
    """A device without an odometer: its moving distance counted on from the vehicle's
    entered odometer; engine hours: ignition-on time on from the entered hours."""
    _s, _sm, redis = env
    car = Device()
    due = (("tyres", "odometer_km", 500.5), ("service", "engine_hours", 100.0))
    infos = {car.device_id: maintained(car, *due, odometer_km=500.0, engine_hours=99.99)}
    detector = detector_of(env, infos)
    # 36 km/h, 10 s apart: 100 m and 10 s of engine time a fix.
    drive = [car.at(10.6, 106.6 + i * 100 / 109_000, speed_kph=36, ignition=True) for i in range(8)]
    await detector.positions_committed(drive[:4])
    assert await events_of(redis, car, "maintenance_due") == []
    await detector.positions_committed(drive[4:])
    events = await events_of(redis, car, "maintenance_due")
    assert [e["details"]["maintenance_id"] for e in events] == ["service", "tyres"]
    hours, km = (e["details"]["reading"] for e in events)
    assert hours == pytest.approx(100.0, abs=0.003)  # 36 s of engine time past 99.99 h
    assert km == pytest.approx(500.5, abs=0.11)
    meters = json.loads(await redis.hget(detection_state_key(car.device_id), METERS_FIELD))
    assert meters["odometer_km"] == pytest.approx(500.7, abs=0.01)
    assert meters["engine_hours"] == pytest.approx(99.99 + 70 / 3600, abs=1e-4)

    # Entering new meters on the vehicle resets the count to them.
    infos[car.device_id] = maintained(car, *due, odometer_km=20.0, engine_hours=5.0)
    here = drive[-1]
    await detector.positions_committed([car.at(here.lat, here.lon, speed_kph=0, ignition=False)])
    meters = json.loads(await redis.hget(detection_state_key(car.device_id), METERS_FIELD))
    assert meters["odometer_km"] == 20.0
    assert meters["engine_hours"] == pytest.approx(5.0 + 10 / 3600, abs=1e-4)

    # Moved to another vehicle (entered with the same meters): counts on from that one's.
    await detector.positions_committed([car.at(here.lat, here.lon + 0.001, speed_kph=36)])
    car.vehicle_id = uuid.uuid4()
    infos[car.device_id] = maintained(car, odometer_km=20.0, engine_hours=5.0)
    await detector.positions_committed([car.at(here.lat, here.lon + 0.001, speed_kph=0)])
    meters = json.loads(await redis.hget(detection_state_key(car.device_id), METERS_FIELD))
    assert meters == {"vehicle_id": str(car.vehicle_id), "odometer_km": 20.0, "engine_hours": 5.0}
