"""Device -> vehicle/org mapping from the vehicle service, cached in process.

The hot path asks `lookup(uid)` which answers from memory; only a miss (or an expired
entry) goes to the vehicle service, once per uid however many messages wait for it. Unknown
uids are cached too, briefly, so a flood from an unknown device cannot hammer the vehicle
service. Entries are dropped on `fleet:devices` messages; after a lost Redis subscription
the whole cache is dropped, since invalidations may have been missed.
"""

import asyncio
import re
import time
from uuid import UUID

import httpx
import orjson
from redis.asyncio import Redis

from fleet_common.auth import INTERNAL_TOKEN_HEADER
from fleet_common.logging import get_logger
from fleet_common.redis import DEVICES_CHANNEL
from fleet_location.ingest import metrics
from fleet_location.ingest.parsing import DeviceInfo, MaintenanceDuePoint

log = get_logger(__name__)

MISSING = object()  # not in the cache (or expired): ask `resolve`
# The vehicle service's uid rule: anything else cannot be a device (and never reaches a URL).
MAX_ENTRIES = 200_000
UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,64}$")


class DirectoryUnavailable(Exception):
    """The vehicle service could not answer; the caller must retry later, not reject."""


def _optional_float(value) -> float | None:
    return float(value) if value is not None else None


def _device(document: dict) -> DeviceInfo:
    vehicle_id = document.get("vehicle_id")
    limit = document.get("speed_limit_kph")
    key_hash = document.get("http_key_sha256")
    maintenance = tuple(
        MaintenanceDuePoint(
            id=str(item["id"]),
            name=str(item["name"]),
            meter=str(item["meter"]),
            next_due=float(item["next_due"]),
        )
        for item in document.get("maintenance") or ()
    )
    return DeviceInfo(
        device_id=UUID(str(document["device_id"])),
        uid=str(document["uid"]),
        vehicle_id=UUID(str(vehicle_id)) if vehicle_id else None,
        org_id=UUID(str(document["org_id"])),
        speed_limit_kph=float(limit) if limit is not None else None,
        protocol=document.get("protocol"),
        active=bool(document.get("active", True)),
        vehicle_group=document.get("vehicle_group") or None,
        http_key_sha256=bytes.fromhex(key_hash) if key_hash else None,
        http_key_required=bool(document.get("http_key_required", True)),
        odometer_km=_optional_float(document.get("odometer_km")),
        engine_hours=_optional_float(document.get("engine_hours")),
        maintenance=maintenance,
    )


class DeviceDirectory:
    def __init__(
        self,
        *,
        vehicle_url: str,
        internal_token: str,
        redis: Redis,
        http: httpx.AsyncClient,
        ttl_s: float,
        negative_ttl_s: float,
    ) -> None:
        self._base = vehicle_url.rstrip("/")
        self._headers = {INTERNAL_TOKEN_HEADER: internal_token}
        self._redis = redis
        self._http = http
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._entries: dict[str, tuple[DeviceInfo | None, float]] = {}
        self._uid_by_device: dict[UUID, str] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    # -------------------------------------------------------------------- lookups

    def lookup(self, uid: str):
        """The cached answer (a DeviceInfo, or None for unknown), or MISSING."""
        entry = self._entries.get(uid)
        if entry is None or entry[1] < time.monotonic():
            return MISSING
        return entry[0]

    def _store(self, uid: str, device: DeviceInfo | None) -> None:
        if device is None and len(self._entries) > MAX_ENTRIES:
            # Random uids must not grow the cache without bound: forget unknown ones.
            self._entries = {k: v for k, v in self._entries.items() if v[0] is not None}
        ttl = self._ttl_s if device is not None else self._negative_ttl_s
        self._entries[uid] = (device, time.monotonic() + ttl)
        if device is not None:
            self._uid_by_device[device.device_id] = uid

    async def resolve(self, uid: str) -> DeviceInfo | None:
        """Ask the vehicle service (one request per uid at a time)."""
        cached = self.lookup(uid)
        if cached is not MISSING:
            return cached
        if not UID_PATTERN.match(uid):
            self._store(uid, None)
            return None
        future = self._inflight.get(uid)
        if future is None:
            future = asyncio.ensure_future(self._fetch(uid))
            self._inflight[uid] = future
            future.add_done_callback(lambda _f: self._inflight.pop(uid, None))
        return await asyncio.shield(future)

    async def _fetch(self, uid: str) -> DeviceInfo | None:
        try:
            response = await self._http.get(
                f"{self._base}/internal/devices/{uid}", headers=self._headers
            )
        except httpx.HTTPError as exc:
            return self._stale_or_raise(uid, exc)
        if response.status_code == 404:
            self._store(uid, None)
            return None
        if response.status_code != 200:
            return self._stale_or_raise(uid, RuntimeError(f"HTTP {response.status_code}"))
        try:
            device = _device(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            return self._stale_or_raise(uid, exc)
        self._store(uid, device)
        return device

    def _stale_or_raise(self, uid: str, exc: Exception) -> DeviceInfo | None:
        # An expired entry is still a better answer than holding the device's positions.
        metrics.DEVICE_LOOKUP_ERRORS.inc()
        entry = self._entries.get(uid)
        if entry is not None:
            return entry[0]
        log.warning("device lookup failed", uid=uid, error=f"{type(exc).__name__}: {exc}")
        raise DirectoryUnavailable(str(exc)) from exc

    def invalidate(self, uid: str | None = None, device_id: UUID | None = None) -> None:
        if device_id is not None:
            old_uid = self._uid_by_device.pop(device_id, None)
            if old_uid is not None:
                self._entries.pop(old_uid, None)
        if uid is not None:
            self._entries.pop(uid, None)

    def speed_limit_for(self, device_id: UUID) -> float | None:
        """The cached speed limit of the device's vehicle, for overspeed detection."""
        uid = self._uid_by_device.get(device_id)
        entry = self._entries.get(uid) if uid is not None else None
        device = entry[0] if entry is not None else None
        return device.speed_limit_kph if device is not None else None

    def cached_device(self, device_id: UUID | str) -> DeviceInfo | None:
        """The cached device (even if its entry expired), or None if not cached: what the
        detector puts on events about it (its vehicle group)."""
        if not isinstance(device_id, UUID):
            try:
                device_id = UUID(device_id)
            except ValueError:
                return None
        uid = self._uid_by_device.get(device_id)
        entry = self._entries.get(uid) if uid is not None else None
        return entry[0] if entry is not None else None

    def knows_vehicle(self, org_id: UUID, vehicle_id: UUID) -> bool:
        """Whether a cached device of this org is on this vehicle."""
        return any(
            device is not None and device.org_id == org_id and device.vehicle_id == vehicle_id
            for device, _expires in self._entries.values()
        )

    def clear(self) -> None:
        self._entries.clear()
        self._uid_by_device.clear()

    # -------------------------------------------------------------------- background

    async def warm_up(self, page_size: int = 1000) -> int:
        """Load every device, page by page, so the first messages need no lookup."""
        after: str | None = None
        loaded = 0
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if after:
                params["after"] = after
            response = await self._http.get(
                f"{self._base}/internal/devices", params=params, headers=self._headers
            )
            response.raise_for_status()
            page = response.json()
            for item in page.get("items", []):
                device = _device(item)
                self._store(device.uid, device)
                loaded += 1
            after = page.get("next_after")
            if not after or not page.get("items"):
                return loaded

    async def listen(self) -> None:
        """Drop entries on `fleet:devices` messages, for as long as the service runs."""
        delay_s = 0.5
        first = True
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(DEVICES_CHANNEL)
                    if not first:
                        # Anything could have changed while we were not subscribed.
                        self.clear()
                    first = False
                    delay_s = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("device invalidation feed lost", error=str(exc))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 10.0)

    def _on_message(self, data: bytes | str) -> None:
        try:
            message = orjson.loads(data)
            uid = message.get("uid")
            device_id = message.get("device_id")
            self.invalidate(
                uid=str(uid) if uid else None,
                device_id=UUID(str(device_id)) if device_id else None,
            )
        except (orjson.JSONDecodeError, ValueError, AttributeError, TypeError):
            log.warning("ignoring malformed fleet:devices message")
