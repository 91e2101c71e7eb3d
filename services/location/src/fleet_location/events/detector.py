"""The event detector: a `PositionObserver` that turns positions into events on `fleet:events`.

State per device (inside which geofences, overspeed episode, idle, battery, online, ignition,
the open trip, raised alarms, meters and the maintenance due points raised) lives in one
Redis hash with a version; the meters are also written apart (`METERS_FIELD`), for the
vehicle service to service maintenance at the meter's value. A batch reads every
device's state in one round trip, computes transitions in memory and writes each device's new
state together with its events in one Lua script that checks the version first, so two
replicas (or a restart that replays a batch) never fire the same crossing twice: a lost race
is recomputed from the new state, and positions at or before the last one seen are ignored.
The event types and their `details` are in docs/events.md.
"""

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args
from uuid import UUID

import orjson
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_common.redis import EVENTS_STREAM, METERS_FIELD, detection_state_key, latest_key
from fleet_common.tasks import stop_tasks
from fleet_location.config import Settings
from fleet_location.geofences.index import GeofenceIndex, IndexedGeofence, haversine_m
from fleet_location.ingest.metrics import DEVICES_SEEN, VEHICLES
from fleet_location.ingest.parsing import DeviceInfo, MaintenanceDuePoint
from fleet_location.positions.model import Position
from fleet_location.positions.service import Status, vehicle_status
from fleet_location.redis_scripts import queue_script

log = get_logger(__name__)

EVENTS_DETECTED = Counter(
    "events_detected_total", "Events published to the fleet:events stream.", ["type"]
)

SpeedLimitLookup = Callable[[UUID], float | Awaitable[float | None] | None]
# The cached device (a DeviceInfo: its vehicle group, meters and maintenance) by device id,
# or None if not cached.
DeviceLookup = Callable[[UUID | str], DeviceInfo | None]
Event = dict[str, Any]
State = dict[str, Any]
MAX_CAS_ROUNDS = 8

# KEYS: the devices' state hashes, then the events stream. ARGV: TTL seconds, stream MAXLEN,
# then per device (in KEYS order): expected version ("" if none), new state JSON, meters
# JSON ("" if none yet), event count, and that many events' JSON. Each device is written
# only if its version is still the expected one; returns, per device, its new version, or
# false on a lost race.
_CAS_SCRIPT = """
local stream = KEYS[#KEYS]
local ttl, maxlen = ARGV[1], ARGV[2]
local results = {}
local at = 3
for k = 1, #KEYS - 1 do
  local expected, state, meters = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local count = tonumber(ARGV[at + 3])
  local v = redis.call('HGET', KEYS[k], 'v')
  if (v or '') == expected then
    local version = tonumber(v or '0') + 1
    redis.call('HSET', KEYS[k], 'v', version, 's', state)
    if meters ~= '' then
      redis.call('HSET', KEYS[k], 'METERS_FIELD', meters)
    end
    redis.call('EXPIRE', KEYS[k], ttl)
    for i = at + 4, at + 3 + count do
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', ARGV[i])
    end
    results[k] = version
  else
    results[k] = false
  end
  at = at + 4 + count
end
return results
""".replace("METERS_FIELD", METERS_FIELD)
# Devices per script call: one call holds Redis for its whole length.
CAS_CHUNK = 256
# Bounds the cache of device states (dropping entries only costs a read).
MAX_CACHED_STATES = 100_000


@dataclass(frozen=True)
class DetectionConfig:
    overspeed_hysteresis_kph: float = 5.0
    overspeed_min_duration_s: float = 10.0
    idle_after_s: float = 300.0
    idle_speed_kph: float = 3.0
    idle_radius_m: float = 50.0
    moving_speed_kph: float = 5.0
    offline_after_s: float = 600.0
    offline_sweep_interval_s: float = 30.0
    low_battery_pct: float = 20.0
    low_battery_hysteresis_pct: float = 5.0
    stop_speed_kph: float = 3.0
    min_stop_duration_s: float = 180.0
    state_ttl_s: int = 30 * 86_400
    events_stream_maxlen: int = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> "DetectionConfig":
        return cls(
            overspeed_hysteresis_kph=settings.overspeed_hysteresis_kph,
            overspeed_min_duration_s=settings.overspeed_min_duration_s,
            idle_after_s=settings.idle_after_s,
            idle_speed_kph=settings.idle_speed_kph,
            idle_radius_m=settings.idle_radius_m,
            moving_speed_kph=settings.moving_speed_kph,
            offline_after_s=settings.offline_after_s,
            offline_sweep_interval_s=settings.offline_sweep_interval_s,
            low_battery_pct=settings.low_battery_pct,
            low_battery_hysteresis_pct=settings.low_battery_hysteresis_pct,
            stop_speed_kph=settings.stop_speed_kph,
            min_stop_duration_s=settings.min_stop_duration_s,
            state_ttl_s=settings.detection_state_ttl_s,
            events_stream_maxlen=settings.events_stream_maxlen,
        )


def _alarm_names(value: Any) -> set[str]:
    """`attrs.alarm` as a set of names: a name or a list of them; anything else (a flag, a
    number) names no alarm."""
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str) and item}
    return set()


def meters_json(state: State) -> bytes:
    """The meters the vehicle service reads (`METERS_FIELD`), or b"" before any position."""
    if "odo" not in state:
        return b""
    return orjson.dumps(
        {
            "vehicle_id": state.get("veh"),
            "odometer_km": round(state["odo"], 3),
            "engine_hours": round(state.get("eng", 0.0), 4),
        }
    )


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def position_json(p: Position) -> dict[str, Any]:
    return {
        "lat": p.lat,
        "lon": p.lon,
        "speed_kph": p.speed_kph,
        "heading_deg": p.heading_deg,
        "altitude_m": p.altitude_m,
        "accuracy_m": p.accuracy_m,
        "battery_pct": p.battery_pct,
        "ignition": p.ignition,
        "recorded_at": p.recorded_at.isoformat().replace("+00:00", "Z"),
    }


def _event(
    type_: str,
    *,
    org_id: UUID | str,
    vehicle_id: UUID | str | None,
    device_id: UUID | str,
    ts: float,
    position: dict[str, Any] | None,
    details: dict[str, Any],
) -> Event:
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "org_id": str(org_id),
        "vehicle_id": str(vehicle_id) if vehicle_id else None,
        "device_id": str(device_id),
        "ts": _iso(ts),
        "position": position,
        "details": details,
    }


class EventDetector:
    """Implements `PositionObserver`; also sweeps for devices silent for too long."""

    def __init__(
        self,
        *,
        redis: Redis,
        geofences: GeofenceIndex,
        speed_limit_for: SpeedLimitLookup,
        config: DetectionConfig,
        device_for: DeviceLookup | None = None,
    ) -> None:
        self.redis = redis
        self._device_for = device_for
        self.geofences = geofences
        self.config = config
        self._speed_limit_for = speed_limit_for
        self._cas = redis.register_script(_CAS_SCRIPT)
        self._states: dict[Any, tuple[str, bytes | None]] = {}  # device -> (version, state)
        self._tasks: list[asyncio.Task] = []

    # -- PositionObserver ----------------------------------------------------------------

    async def positions_committed(self, positions: list[Position]) -> None:
        if not positions:
            return
        by_org: dict[UUID, list[Position]] = {}
        for p in positions:
            by_org.setdefault(p.org_id, []).append(p)
        inside: dict[int, list[IndexedGeofence]] = {}
        known_geofences: dict[UUID, frozenset[str]] = {}
        for org_id, org_positions in by_org.items():
            index = await self.geofences.for_org(org_id)
            known_geofences[org_id] = index.id_strings
            found = index.containing_many(
                [p.lat for p in org_positions], [p.lon for p in org_positions]
            )
            for p, geofences in zip(org_positions, found, strict=True):
                inside[id(p)] = geofences

        by_device: dict[UUID, list[Position]] = {}
        for p in positions:
            by_device.setdefault(p.device_id, []).append(p)
        work: dict[UUID, Callable[[State], list[Event]]] = {}
        for device_id, device_positions in by_device.items():
            limit = self._speed_limit_for(device_id)
            if inspect.isawaitable(limit):
                limit = await limit
            org_id = device_positions[0].org_id
            info = self._device_for(device_id) if self._device_for is not None else None
            work[device_id] = self._position_steps(
                device_positions, inside, limit, known_geofences[org_id], info
            )
        await self._apply(work)

    async def device_status(
        self,
        *,
        device_id: UUID,
        vehicle_id: UUID | None,
        org_id: UUID,
        online: bool,
        at: datetime,
    ) -> None:
        ts = at.timestamp()

        def step(state: State) -> list[Event]:
            events: list[Event] = []
            state.setdefault("org", str(org_id))
            if vehicle_id is not None:
                state["veh"] = str(vehicle_id)
            if online and state.get("online") is not True:
                state["online"] = True
                events.append(
                    _event(
                        "device_online",
                        org_id=org_id,
                        vehicle_id=vehicle_id,
                        device_id=device_id,
                        ts=ts,
                        position=None,
                        details={"source": "status"},
                    )
                )
            elif not online and state.get("online") is not False:
                events.extend(self._go_offline(state, device_id, ts, {"source": "status"}))
            return events

        await self._apply({device_id: step})

    # -- the offline sweep ---------------------------------------------------------------

    async def sweep_offline(self, now: float | None = None) -> int:
        """Mark devices whose newest position is older than `offline_after_s` offline, and
        count every device by status on the way (the fleet_vehicles gauge)."""
        now = time.time() if now is None else now
        cutoff = now - self.config.offline_after_s
        # Keyed by UUID, as the ingest path keys its work: one cached state per device.
        silent: dict[UUID, tuple[str, float]] = {}
        seen = 0
        # Every status is set, to 0 if no device has it: a panel shows "0 moving", not nothing.
        by_status = dict.fromkeys(get_args(Status), 0)
        now_utc = datetime.fromtimestamp(now, UTC)
        async for key in self.redis.scan_iter(match=latest_key("*"), count=500):
            for field, raw in (await self.redis.hgetall(key)).items():
                try:
                    device = UUID(field.decode())
                    latest = json.loads(raw)
                    recorded_at = datetime.fromisoformat(
                        latest["recorded_at"].replace("Z", "+00:00")
                    ).timestamp()
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                by_status[vehicle_status(latest, now_utc, self.config)] += 1
                if recorded_at < cutoff:
                    silent[device] = (latest.get("vehicle_id"), recorded_at)
                else:
                    seen += 1
        DEVICES_SEEN.set(seen)
        for status, count in by_status.items():
            VEHICLES.labels(status=status).set(count)
        if not silent:
            return 0
        # Only devices still online need the versioned write; read their state in one trip.
        async with self.redis.pipeline(transaction=False) as pipe:
            for device in silent:
                pipe.hget(detection_state_key(device), "s")
            raw_states = await pipe.execute()
        work: dict[UUID, Callable[[State], list[Event]]] = {}
        for (device, (vehicle_id, recorded_at)), raw in zip(
            silent.items(), raw_states, strict=True
        ):
            if raw is None or json.loads(raw).get("online") is not True:
                continue

            def step(state: State, device=device, vehicle_id=vehicle_id, seen=recorded_at):
                if state.get("online") is not True or state.get("last", 0) > seen:
                    return []
                if vehicle_id:
                    state.setdefault("veh", vehicle_id)
                details = {
                    "source": "silence",
                    "last_seen_at": _iso(seen),
                    "silent_s": round(now - seen, 1),
                }
                return self._go_offline(state, device, now, details)

            work[device] = step
        return len(await self._apply(work))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.offline_sweep_interval_s)
            try:
                await self.sweep_offline()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("offline sweep failed", error=str(exc))

    def start(self) -> None:
        """Start the offline sweep and the geofence-change listener."""
        self._tasks = [
            asyncio.create_task(self._sweep_forever(), name="offline-sweep"),
            asyncio.create_task(self.geofences.listen(self.redis), name="geofence-notices"),
        ]

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []

    # -- transitions ---------------------------------------------------------------------

    def _go_offline(
        self, state: State, device_id: UUID | str, ts: float, details: dict[str, Any]
    ) -> list[Event]:
        state["online"] = False
        state["idle"] = None
        events = [
            _event(
                "device_offline",
                org_id=state["org"],
                vehicle_id=state.get("veh"),
                device_id=device_id,
                ts=ts,
                position=None,
                details=details,
            )
        ]
        episode = state.get("os")
        if episode:
            # An episode cannot end by slowing down while nothing is heard: close it here.
            if episode.get("fired"):
                events.append(self._overspeed_ended(state, device_id, episode, ts, "offline"))
            state["os"] = None
        return events

    def _overspeed_ended(
        self, state: State, device_id: UUID | str, episode: dict, ts: float, ended_by: str
    ) -> Event:
        """The closing event of an alerted episode: the same `episode_id`, its maximum."""
        return _event(
            "overspeed",
            org_id=state["org"],
            vehicle_id=state.get("veh"),
            device_id=device_id,
            ts=ts,
            position=episode["max_position"],
            details={
                "phase": "ended",
                "episode_id": episode["id"],
                "max_speed_kph": episode["max"],
                "limit_kph": episode["limit"],
                "limit_source": episode["source"],
                "geofence_id": episode.get("geofence_id"),
                "started_at": _iso(episode["start"]),
                "ended_at": _iso(ts),
                "duration_s": round(ts - episode["start"], 1),
                "ended_by": ended_by,
            },
        )

    def _position_steps(
        self,
        positions: list[Position],
        inside: dict[int, list[IndexedGeofence]],
        vehicle_limit: float | None,
        known_geofences: frozenset[str],
        info: DeviceInfo | None,
    ) -> Callable[[State], list[Event]]:
        def run(state: State) -> list[Event]:
            events: list[Event] = []
            last = state.get("last", float("-inf"))
            if positions[-1].recorded_at.timestamp() <= last:
                return events  # all replayed or late: already judged, or would fake a crossing
            # Ids as the device's newest position has them (a device may change vehicles).
            state["org"] = str(positions[-1].org_id)
            if positions[-1].vehicle_id is not None:
                state["veh"] = str(positions[-1].vehicle_id)
            if info is not None:
                self._sync_vehicle(state, info)
            schedules = info.maintenance if info is not None else ()
            for p in positions:
                ts = p.recorded_at.timestamp()
                if ts <= last:
                    continue
                self._step(
                    state, p, ts, inside[id(p)], vehicle_limit, known_geofences, schedules, events
                )
                last = state["last"] = ts
            return events

        return run

    def _step(
        self,
        state: State,
        p: Position,
        ts: float,
        geofences: list[IndexedGeofence],
        vehicle_limit: float | None,
        known_geofences: frozenset[str],
        schedules: tuple[MaintenanceDuePoint, ...],
        events: list[Event],
    ) -> None:
        cfg = self.config

        def emit(type_: str, details: dict[str, Any]) -> None:
            events.append(
                _event(
                    type_,
                    org_id=p.org_id,
                    vehicle_id=p.vehicle_id,
                    device_id=p.device_id,
                    ts=ts,
                    position=position_json(p),
                    details=details,
                )
            )

        if state.get("online") is False:
            emit("device_online", {"source": "position"})
        state["online"] = True

        # Geofences: one deleted or deactivated while the device was inside is forgotten.
        current = {g.key: g for g in geofences}
        previous = [g for g in state.get("gf", []) if g in known_geofences]
        for gid in previous:
            if gid not in current:
                emit("geofence_exit", {"geofence_id": gid})
        for gid, geofence in current.items():
            if gid not in previous:
                emit("geofence_enter", {"geofence_id": gid, "geofence_name": geofence.name})
        state["gf"] = sorted(current)

        # Overspeed: the lowest applicable limit. An episode is reported ("started") once it
        # has lasted the minimum duration, while it goes on; it ends below the limit by a
        # margin, and an alerted one is closed ("ended") with the highest speed it reached.
        limit, source, limit_geofence = vehicle_limit, "vehicle", None
        for g in current.values():
            if g.speed_limit_kph is not None and (limit is None or g.speed_limit_kph < limit):
                limit, source, limit_geofence = g.speed_limit_kph, "geofence", g.key
        episode = state.get("os")
        speed = p.speed_kph
        if episode is None:
            if speed is not None and limit is not None and speed > limit:
                episode = state["os"] = {
                    "id": str(uuid.uuid4()),
                    "start": ts,
                    "max": speed,
                    "limit": limit,
                    "source": source,
                    "geofence_id": limit_geofence,
                    "max_position": position_json(p),
                    "fired": False,
                }
        elif speed is not None:
            if speed > episode["max"]:
                episode["max"] = speed
                episode["max_position"] = position_json(p)
            if limit is None or speed <= limit - cfg.overspeed_hysteresis_kph:
                if episode.get("fired"):
                    events.append(self._overspeed_ended(state, p.device_id, episode, ts, "slowed"))
                state["os"] = episode = None
        if (
            episode is not None
            and not episode.get("fired")
            and ts - episode["start"] >= cfg.overspeed_min_duration_s
        ):
            episode["fired"] = True
            emit(
                "overspeed",
                {
                    "phase": "started",
                    "episode_id": episode.setdefault("id", str(uuid.uuid4())),
                    "speed_kph": speed,
                    "max_speed_kph": episode["max"],
                    "limit_kph": episode["limit"],
                    "limit_source": episode["source"],
                    "geofence_id": episode.get("geofence_id"),
                    "started_at": _iso(episode["start"]),
                    "duration_s": round(ts - episode["start"], 1),
                },
            )

        # Ignition: a change from the last known state (the first one known is no change).
        engine_was_on = state.get("ign") is True
        ignition = p.ignition
        if ignition is not None:
            was = state.get("ign")
            if was is not None and ignition != was:
                if ignition:
                    emit("ignition_on", {})
                else:
                    on_since = state.get("ign_at")
                    on_s = round(ts - on_since, 1) if on_since is not None else None
                    emit("ignition_off", {"on_duration_s": on_s})
            if ignition != was:
                state["ign_at"] = ts
            state["ign"] = ignition

        moved_m = self._trip_step(state, p, ts, speed, emit)
        self._meter_step(state, p, ts, moved_m, engine_was_on, schedules, emit)

        # Alarms (SOS, power cut, tamper...) as `attrs.alarm` names them: once per raising.
        alarm = p.attrs.get("alarm") if p.attrs else None
        if alarm or state.get("alarm"):
            names = sorted(_alarm_names(alarm))
            raised = state.get("alarm") or []
            for name in names:
                if name not in raised:
                    emit("alarm", {"alarm": name})
            state["alarm"] = names or None

        # Idle: ignition on without moving (by speed, or by drifting off the spot).
        idle = state.get("idle")
        moving = (speed or 0.0) >= cfg.idle_speed_kph or (
            idle is not None
            and haversine_m(p.lat, p.lon, idle["lat"], idle["lon"]) > cfg.idle_radius_m
        )
        if p.ignition is True and not moving:
            if idle is None:
                state["idle"] = {"since": ts, "lat": p.lat, "lon": p.lon, "fired": False}
            elif not idle["fired"] and ts - idle["since"] >= cfg.idle_after_s:
                idle["fired"] = True
                duration_s = round(ts - idle["since"], 1)
                emit("idle", {"since": _iso(idle["since"]), "duration_s": duration_s})
        else:
            state["idle"] = None

        # Battery: once per crossing below the threshold, re-armed above it plus a margin.
        battery = p.battery_pct
        if battery is not None:
            if not state.get("batt_low") and battery < cfg.low_battery_pct:
                state["batt_low"] = True
                emit("low_battery", {"battery_pct": battery, "threshold_pct": cfg.low_battery_pct})
            elif state.get("batt_low") and battery >= (
                cfg.low_battery_pct + cfg.low_battery_hysteresis_pct
            ):
                state["batt_low"] = False

    def _trip_step(
        self,
        state: State,
        p: Position,
        ts: float,
        speed: float | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> float:
        """Trips as the trips API splits history (`fleet_location.trips.detection`), online.

        A segment (previous fix -> this one) is still when the vehicle stood at the previous
        fix (ignition off or under `stop_speed_kph`) or the device said nothing for a stop's
        length. A still run lasting `min_stop_duration_s` is a stop: the open trip ended
        where the run began (`trip_end`, reported once the stop is certain). A moving
        segment with no trip open starts one where it began (`trip_start`).
        Returns the length of a moving segment (0 for a still one): what the odometer counts.
        """
        cfg = self.config
        previous = state.get("tp")  # [ts, lat, lon, still] of the previous fix
        if previous is None:
            segment_m = 0.0
            segment_kph = 0.0
        else:
            segment_m = haversine_m(previous[1], previous[2], p.lat, p.lon)
            gap_s = ts - previous[0]
            segment_kph = segment_m / gap_s * 3.6 if gap_s > 0 else 0.0
        here_kph = speed if speed is not None else segment_kph
        still_here = p.ignition is False or here_kph < cfg.stop_speed_kph
        moved_m = 0.0
        if previous is not None:
            prev_ts, prev_lat, prev_lon, prev_still = previous
            trip = state.get("trip")
            if prev_still or ts - prev_ts >= cfg.min_stop_duration_s:
                run = state.get("run")
                if run is None:
                    run = state["run"] = (
                        [prev_ts, prev_lat, prev_lon, trip["m"], trip["max"]]
                        if trip is not None
                        else [prev_ts, prev_lat, prev_lon, 0.0, 0.0]
                    )
                if trip is not None:
                    trip["m"] += segment_m
                    if ts - run[0] >= cfg.min_stop_duration_s:
                        emit(
                            "trip_end",
                            {
                                "started_at": _iso(trip["start"]),
                                "ended_at": _iso(run[0]),
                                "duration_s": round(run[0] - trip["start"], 1),
                                "distance_m": round(run[3], 1),
                                "max_speed_kph": run[4],
                                "start": {"lat": trip["lat"], "lon": trip["lon"]},
                                "end": {"lat": run[1], "lon": run[2]},
                            },
                        )
                        state["trip"] = None
            else:
                if trip is None:
                    trip = state["trip"] = {
                        "start": prev_ts,
                        "lat": prev_lat,
                        "lon": prev_lon,
                        "m": 0.0,
                        "max": 0.0,
                    }
                    emit(
                        "trip_start",
                        {"started_at": _iso(prev_ts), "start": {"lat": prev_lat, "lon": prev_lon}},
                    )
                state["run"] = None
                trip["m"] += segment_m
                moved_m = segment_m
            if state.get("trip") is not None and here_kph > trip["max"]:
                trip["max"] = here_kph
        state["tp"] = [ts, p.lat, p.lon, still_here]
        return moved_m

    def _sync_vehicle(self, state: State, info: DeviceInfo) -> None:
        """Once a batch, what the vehicle service says: the entered meters (a new value on
        the vehicle, or another vehicle, resets the count to it), and the due points still
        scheduled (one serviced or deleted is forgotten, so its next point is raised)."""
        vehicle = str(info.vehicle_id) if info.vehicle_id else None
        seed = [vehicle, info.odometer_km]
        if info.odometer_km is not None and seed != state.get("odo_seed"):
            state["odo"], state["odo_seed"] = info.odometer_km, seed
        seed = [vehicle, info.engine_hours]
        if info.engine_hours is not None and seed != state.get("eng_seed"):
            state["eng"], state["eng_seed"] = info.engine_hours, seed
        raised = state.get("mnt")
        if raised:
            scheduled = {s.id: s.next_due for s in info.maintenance}
            kept = {sid: due for sid, due in raised.items() if scheduled.get(sid) == due}
            state["mnt"] = kept or None

    def _meter_step(
        self,
        state: State,
        p: Position,
        ts: float,
        moved_m: float,
        engine_was_on: bool,
        schedules: tuple[MaintenanceDuePoint, ...],
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        """The vehicle's meters, and `maintenance_due` once per due point they reach.

        Odometer: the device's own (Teltonika IO 16, `odometer` in telemetry) when it sends
        one, else the moving distance counted on from the vehicle's entered `odometer_km`.
        Engine hours: ignition-on time (gaps longer than `offline_after_s` not counted) on
        from the vehicle's entered `engine_hours` (`_sync_vehicle`). A due point is raised
        once; servicing moves it, and re-arms it.
        """
        if p.odometer_km is not None:
            state["odo"] = p.odometer_km
        else:
            state["odo"] = state.get("odo", 0.0) + moved_m / 1000.0
        previous_ts = state.get("last")
        if engine_was_on and previous_ts is not None:
            gap_s = ts - previous_ts
            if gap_s <= self.config.offline_after_s:
                state["eng"] = state.get("eng", 0.0) + gap_s / 3600.0

        for schedule in schedules:
            reading = state["odo"] if schedule.meter == "odometer_km" else state.get("eng", 0.0)
            if reading < schedule.next_due:
                continue
            raised = state.get("mnt") or {}
            if raised.get(schedule.id) != schedule.next_due:
                state["mnt"] = {**raised, schedule.id: schedule.next_due}
                emit(
                    "maintenance_due",
                    {
                        "maintenance_id": schedule.id,
                        "name": schedule.name,
                        "meter": schedule.meter,
                        "next_due": schedule.next_due,
                        "reading": round(reading, 3),
                    },
                )

    def _add_vehicle_group(self, device: Any, state: State, events: list[Event]) -> None:
        """Events carry their vehicle's group, for alert rules on groups: the cached device's,
        else the last one known (a silent device whose cache entry was dropped)."""
        info = self._device_for(device) if self._device_for is not None else None
        if info is not None:
            state["grp"] = info.vehicle_group
        group = state.get("grp")
        for event in events:
            event["vehicle_group"] = group

    # -- versioned state writes ----------------------------------------------------------

    async def _apply(self, work: dict[Any, Callable[[State], list[Event]]]) -> list[Event]:
        """Run each device's step on its current state and write state + events atomically.

        Each device's last written (version, state) is kept here, so a batch needs no read
        while this process is the only writer; the versioned write catches any other writer
        (another replica, the offline sweep elsewhere), and those devices are read again.
        """
        published: list[Event] = []
        pending = dict(work)
        cache = self._states
        for _ in range(MAX_CAS_ROUNDS):
            if not pending:
                break
            unknown = [device for device in pending if device not in cache]
            if unknown:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for device in unknown:
                        pipe.hmget(detection_state_key(device), "v", "s")
                    stored = await pipe.execute()
                if len(cache) + len(unknown) > MAX_CACHED_STATES:
                    cache.clear()
                for device, (version, raw) in zip(unknown, stored, strict=True):
                    cache[device] = (version.decode() if version else "", raw)
            writes: list[tuple[Any, bytes, bytes, list[Event]]] = []
            for device, step in pending.items():
                _version, raw = cache[device]
                state: State = orjson.loads(raw) if raw else {}
                events = step(state)
                if events:
                    self._add_vehicle_group(device, state, events)
                writes.append((device, orjson.dumps(state), meters_json(state), events))
            async with self.redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(writes), CAS_CHUNK):
                    chunk = writes[start : start + CAS_CHUNK]
                    args: list = [self.config.state_ttl_s, self.config.events_stream_maxlen]
                    for device, state_json, meters, events in chunk:
                        args += (cache[device][0], state_json, meters, len(events))
                        args += (orjson.dumps(e) for e in events)
                    keys = [detection_state_key(device) for device, *_ in chunk]
                    await queue_script(pipe, self._cas, keys=[*keys, EVENTS_STREAM], args=args)
                results = await pipe.execute()
            versions = [version for chunk in results for version in chunk]
            for (device, state_json, _meters, events), version in zip(
                writes, versions, strict=True
            ):
                if version:
                    cache[device] = (str(version), state_json)
                    del pending[device]
                    published.extend(events)
                else:
                    del cache[device]  # another writer got there first: read it again
        if pending:
            log.error("detection state contended; positions skipped", devices=len(pending))
        for event in published:
            EVENTS_DETECTED.labels(event["type"]).inc()
        return published


def create_event_detector(
    settings: Settings,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    speed_limit_for: SpeedLimitLookup,
    device_for: DeviceLookup | None = None,
) -> EventDetector:
    """The detector the location app registers as a position observer; `start()` it."""
    return EventDetector(
        redis=redis,
        geofences=GeofenceIndex(sessionmaker, max_age_s=settings.geofence_index_max_age_s),
        speed_limit_for=speed_limit_for,
        config=DetectionConfig.from_settings(settings),
        device_for=device_for,
    )
