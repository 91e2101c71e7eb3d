"""Payload parsing and validation for every telemetry form, into `Position`s.

Each form (our MQTT JSON, OwnTracks, OsmAnd query/form, Traccar Client JSON) is mapped
onto the same fields and validated by one function, `build_position`. A bad position raises
`Rejected` with a stable `reason` (the label of `telemetry_rejected_total`).
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from fleet_location.positions.model import Position

KNOTS_TO_KPH = 1.852
MPS_TO_KPH = 3.6
MAX_ATTRS_BYTES = 4096
MAX_UID_LENGTH = 128
_SPACE_OFFSET = re.compile(r"(?<=\d) (\d{2}:?\d{2})$")


class Reason:
    """Why a payload was refused; every value is a `telemetry_rejected_total` label."""

    INVALID_JSON = "invalid_json"
    INVALID_PAYLOAD = "invalid_payload"
    MISSING_FIELD = "missing_field"
    OUT_OF_RANGE = "out_of_range"
    NON_FINITE = "non_finite"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    TOO_LARGE = "too_large"
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    RATE_LIMITED = "rate_limited"
    STORAGE_ERROR = "storage_error"

    ALL = (
        INVALID_JSON,
        INVALID_PAYLOAD,
        MISSING_FIELD,
        OUT_OF_RANGE,
        NON_FINITE,
        FUTURE_TIMESTAMP,
        STALE_TIMESTAMP,
        TOO_LARGE,
        UNKNOWN_DEVICE,
        INACTIVE_DEVICE,
        MISSING_KEY,
        INVALID_KEY,
        RATE_LIMITED,
        STORAGE_ERROR,
    )


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MaintenanceDuePoint:
    """A maintenance schedule of the device's vehicle: due when `meter` reaches `next_due`."""

    id: str
    name: str
    meter: str  # odometer_km | engine_hours
    next_due: float


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What ingest needs to know about a device, from the vehicle service."""

    device_id: UUID
    uid: str
    vehicle_id: UUID | None
    org_id: UUID
    speed_limit_kph: float | None = None
    protocol: str | None = None
    active: bool = True
    vehicle_group: str | None = None
    # HTTP (OsmAnd) ingest: the SHA-256 of the device's key, and whether it is required.
    http_key_sha256: bytes | None = None
    http_key_required: bool = True
    # The vehicle's meters as last entered (counting goes on from them) and its schedules.
    odometer_km: float | None = None
    engine_hours: float | None = None
    maintenance: tuple[MaintenanceDuePoint, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    max_future: timedelta
    max_age: timedelta
    max_positions_per_message: int


# ---------------------------------------------------------------------------- field checks


def _number(value: Any, name: str, low: float, high: float) -> float:
    kind = type(value)
    # The common case first, cheaply: a JSON number in range (NaN and inf fail the range).
    if (kind is float or kind is int) and low <= value <= high:
        return float(value)
    if kind is bool or not isinstance(value, int | float | str):
        raise Rejected(Reason.INVALID_PAYLOAD, f"{name} must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise Rejected(Reason.INVALID_PAYLOAD, f"{name} must be a number") from None
    if not math.isfinite(number):
        raise Rejected(Reason.NON_FINITE, f"{name} must be finite")
    if not low <= number <= high:
        raise Rejected(Reason.OUT_OF_RANGE, f"{name} must be within [{low}, {high}]")
    return number


def _optional(value: Any, name: str, low: float, high: float) -> float | None:
    if value is None or (type(value) is str and value == ""):
        return None
    return _number(value, name, low, high)


def _boolean(value: Any, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in (
        "true",
        "1",
        "on",
        "yes",
        "false",
        "0",
        "off",
        "no",
    ):
        return value.lower() in ("true", "1", "on", "yes")
    raise Rejected(Reason.INVALID_PAYLOAD, f"{name} must be a boolean")


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """ISO 8601 (naive means UTC), or Unix time in seconds or milliseconds."""
    # The common case first: a JSON number of seconds this side of the year 5138.
    if type(value) is float and 0.0 <= value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    if type(value) is datetime:  # a decoded binary record's (trackers/): already a moment
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        raise Rejected(Reason.INVALID_PAYLOAD, "ts must be ISO 8601 or Unix time")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            parsed = _iso(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        value = number
    if not isinstance(value, int | float):
        raise Rejected(Reason.INVALID_PAYLOAD, "ts must be ISO 8601 or Unix time")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise Rejected(Reason.NON_FINITE, "ts must be finite")
    # 1e11 s is the year 5138: anything larger is milliseconds.
    if abs(seconds) >= 1e11:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise Rejected(Reason.OUT_OF_RANGE, "ts is out of range") from None


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    # An unencoded "+01:00" offset in a query string arrives as " 01:00".
    try:
        return datetime.fromisoformat(_SPACE_OFFSET.sub(r"+\1", text))
    except ValueError:
        raise Rejected(Reason.INVALID_PAYLOAD, "ts must be ISO 8601 or Unix time") from None


def _attrs(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(Reason.INVALID_PAYLOAD, "attrs must be an object")
    if not value:
        return value
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        raise Rejected(Reason.INVALID_PAYLOAD, "attrs must be plain JSON") from None
    if len(encoded) > MAX_ATTRS_BYTES:
        raise Rejected(Reason.TOO_LARGE, f"attrs must encode to at most {MAX_ATTRS_BYTES} bytes")
    # PostgreSQL's jsonb cannot hold U+0000.
    if b"\\u0000" in encoded:
        raise Rejected(Reason.INVALID_PAYLOAD, "attrs must not contain NUL characters")
    return value


def build_position(
    device: DeviceInfo,
    now: datetime,
    limits: Limits,
    *,
    ts: Any,
    lat: Any,
    lon: Any,
    speed_kph: float | None = None,
    heading_deg: Any = None,
    altitude_m: Any = None,
    accuracy_m: Any = None,
    battery_pct: Any = None,
    ignition: Any = None,
    odometer_km: Any = None,
    attrs: Any = None,
) -> Position:
    """Validate one position's fields (already in our units) and build it."""
    if lat is None or lat == "":
        raise Rejected(Reason.MISSING_FIELD, "lat is required")
    if lon is None or lon == "":
        raise Rejected(Reason.MISSING_FIELD, "lon is required")
    lat_value = _number(lat, "lat", -90.0, 90.0)
    lon_value = _number(lon, "lon", -180.0, 180.0)
    recorded_at = parse_timestamp(ts, now)
    if recorded_at - now > limits.max_future:
        raise Rejected(Reason.FUTURE_TIMESTAMP, "ts is too far in the future")
    if now - recorded_at > limits.max_age:
        raise Rejected(Reason.STALE_TIMESTAMP, "ts is older than the accepted age")
    return Position(
        device_id=device.device_id,
        vehicle_id=device.vehicle_id,
        org_id=device.org_id,
        recorded_at=recorded_at,
        lat=lat_value,
        lon=lon_value,
        speed_kph=_optional(speed_kph, "speed", 0.0, 2000.0),
        heading_deg=_optional(heading_deg, "heading", 0.0, 360.0),
        altitude_m=_optional(altitude_m, "alt", -1000.0, 100_000.0),
        accuracy_m=_optional(accuracy_m, "accuracy", 0.0, 1_000_000.0),
        battery_pct=_optional(battery_pct, "battery", 0.0, 100.0),
        ignition=_boolean(ignition, "ignition"),
        odometer_km=_optional(odometer_km, "odometer", 0.0, 100_000_000.0),
        attrs=_attrs(attrs),
    )


# ---------------------------------------------------------------------------- MQTT forms


@dataclass(slots=True)
class ParsedMessage:
    """The outcome of one message: accepted positions, and per-element rejections."""

    positions: list[Position]
    rejections: list[tuple[Rejected, bytes]]


def _elements(payload: bytes, limits: Limits) -> list[Any]:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Rejected(Reason.INVALID_JSON, "payload is not JSON") from None
    elements = document if isinstance(document, list) else [document]
    if not elements:
        raise Rejected(Reason.INVALID_PAYLOAD, "payload is an empty array")
    if len(elements) > limits.max_positions_per_message:
        raise Rejected(
            Reason.TOO_LARGE,
            f"at most {limits.max_positions_per_message} positions per message",
        )
    return elements


def _fleet_element(element: Any, device: DeviceInfo, now: datetime, limits: Limits) -> Position:
    if not isinstance(element, dict):
        raise Rejected(Reason.INVALID_PAYLOAD, "each position must be an object")
    speed = element.get("speed")
    return build_position(
        device,
        now,
        limits,
        ts=element.get("ts"),
        lat=element.get("lat"),
        lon=element.get("lon"),
        speed_kph=speed,
        heading_deg=element.get("heading"),
        altitude_m=element.get("alt"),
        accuracy_m=element.get("accuracy"),
        battery_pct=element.get("battery"),
        ignition=element.get("ignition"),
        odometer_km=element.get("odometer"),
        attrs=element.get("attrs"),
    )


_OWNTRACKS_FIELDS = frozenset(("_type", "lat", "lon", "tst", "vel", "cog", "alt", "acc", "batt"))


def _owntracks_element(
    element: Any, device: DeviceInfo, now: datetime, limits: Limits
) -> Position | None:
    if not isinstance(element, dict):
        raise Rejected(Reason.INVALID_PAYLOAD, "an OwnTracks message must be an object")
    if element.get("_type") != "location":
        return None  # transitions, waypoints, lwt, cards...: not positions
    extra = {
        k: v
        for k, v in element.items()
        if k not in _OWNTRACKS_FIELDS and isinstance(v, str | int | float | bool)
    }
    return build_position(
        device,
        now,
        limits,
        ts=element.get("tst"),
        lat=element.get("lat"),
        lon=element.get("lon"),
        speed_kph=element.get("vel"),  # OwnTracks reports km/h
        heading_deg=element.get("cog"),
        altitude_m=element.get("alt"),
        accuracy_m=element.get("acc"),
        battery_pct=element.get("batt"),
        attrs=extra,
    )


def parse_mqtt_telemetry(
    payload: bytes, device: DeviceInfo, now: datetime, limits: Limits, *, owntracks: bool
) -> ParsedMessage:
    """Parse a `fleet/{uid}/telemetry` or `owntracks/{uid}/...` message.

    A malformed message raises `Rejected`; in an array, each bad element is rejected alone
    so one bad fix does not lose a device's backlog.
    """
    elements = _elements(payload, limits)
    positions: list[Position] = []
    rejections: list[tuple[Rejected, bytes]] = []
    single = len(elements) == 1
    for element in elements:
        try:
            if owntracks:
                position = _owntracks_element(element, device, now, limits)
                if position is None:
                    continue
            else:
                position = _fleet_element(element, device, now, limits)
            positions.append(position)
        except Rejected as exc:
            rejections.append((exc, payload if single else orjson.dumps(element)))
    return ParsedMessage(positions, rejections)


# ---------------------------------------------------------------------------- OsmAnd (HTTP)


@dataclass(slots=True)
class HttpFix:
    """One OsmAnd / Traccar Client position before the device is known."""

    uid: str
    fields: dict[str, Any]


_OSMAND_KNOWN = frozenset(
    (
        "id",
        "deviceid",
        "timestamp",
        "lat",
        "lon",
        "location",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "batt",
        "ignition",
        "odometer",
    )
)
MAX_OSMAND_ATTRS = 32


def _uid(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(Reason.MISSING_FIELD, "the device id is required")
    uid = value.strip()
    if len(uid) > MAX_UID_LENGTH:
        raise Rejected(Reason.INVALID_PAYLOAD, "the device id is too long")
    return uid


def parse_osmand_params(params: Mapping[str, str]) -> HttpFix:
    """The OsmAnd protocol as Traccar Client and OsmAnd send it (query string or form)."""
    uid = _uid(params.get("id") or params.get("deviceid"))
    lat, lon = params.get("lat"), params.get("lon")
    if (lat is None or lon is None) and params.get("location"):
        lat, _, lon = params["location"].partition(",")
    speed = params.get("speed")
    if speed not in (None, ""):
        knots = _number(speed, "speed", 0.0, 2000.0 / KNOTS_TO_KPH)
        speed = knots * KNOTS_TO_KPH
    odometer = params.get("odometer")
    if odometer not in (None, ""):
        odometer = _number(odometer, "odometer", 0.0, 1e11) / 1000.0  # metres in this protocol
    extra = {k: v[:256] for k, v in params.items() if k not in _OSMAND_KNOWN}
    if len(extra) > MAX_OSMAND_ATTRS:
        raise Rejected(Reason.TOO_LARGE, f"at most {MAX_OSMAND_ATTRS} extra parameters")
    return HttpFix(
        uid,
        {
            "ts": params.get("timestamp"),
            "lat": lat,
            "lon": lon,
            "speed_kph": speed,
            "heading_deg": params.get("bearing") or params.get("heading"),
            "altitude_m": params.get("altitude"),
            "accuracy_m": params.get("accuracy"),
            "battery_pct": params.get("batt"),
            "ignition": params.get("ignition"),
            "odometer_km": odometer,
            "attrs": extra,
        },
    )


def _unknown_as_none(value: Any) -> Any:
    """The Traccar Client JSON uses -1 for 'not known'."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return None
    return value


def parse_traccar_json(body: bytes, limits: Limits) -> list[HttpFix]:
    """Traccar Client's JSON body: `{"device_id", "location": {...} | [...]}`."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(Reason.INVALID_JSON, "body is not JSON") from None
    if not isinstance(document, dict):
        raise Rejected(Reason.INVALID_PAYLOAD, "body must be an object")
    uid = _uid(document.get("device_id"))
    locations = document.get("location")
    if locations is None:
        raise Rejected(Reason.MISSING_FIELD, "location is required")
    if not isinstance(locations, list):
        locations = [locations]
    if not locations or len(locations) > limits.max_positions_per_message:
        raise Rejected(Reason.TOO_LARGE, "location must hold 1 to the maximum positions")
    fixes = []
    for location in locations:
        if not isinstance(location, dict) or not isinstance(location.get("coords"), dict):
            raise Rejected(Reason.INVALID_PAYLOAD, "location.coords must be an object")
        coords = location["coords"]
        battery = location.get("battery") if isinstance(location.get("battery"), dict) else {}
        level = _unknown_as_none(battery.get("level"))
        if level is not None:
            level = _number(level, "battery.level", 0.0, 1.0) * 100.0
        speed = _unknown_as_none(coords.get("speed"))
        if speed is not None:
            speed = _number(speed, "speed", 0.0, 2000.0 / MPS_TO_KPH) * MPS_TO_KPH
        odometer = _unknown_as_none(location.get("odometer"))
        if odometer is not None:
            odometer = _number(odometer, "odometer", 0.0, 1e11) / 1000.0
        attrs: dict[str, Any] = {}
        for key in ("is_moving", "event"):
            if isinstance(location.get(key), str | bool):
                attrs[key] = location[key]
        if isinstance(battery.get("is_charging"), bool):
            attrs["charging"] = battery["is_charging"]
        activity = location.get("activity")
        if isinstance(activity, dict) and isinstance(activity.get("type"), str):
            attrs["activity"] = activity["type"][:64]
        fixes.append(
            HttpFix(
                uid,
                {
                    "ts": location.get("timestamp"),
                    "lat": coords.get("latitude"),
                    "lon": coords.get("longitude"),
                    "speed_kph": speed,
                    "heading_deg": _unknown_as_none(coords.get("heading")),
                    "altitude_m": coords.get("altitude"),
                    "accuracy_m": _unknown_as_none(coords.get("accuracy")),
                    "battery_pct": level,
                    "odometer_km": odometer,
                    "attrs": attrs,
                },
            )
        )
    return fixes
