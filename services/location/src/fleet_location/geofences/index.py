"""Per-org in-memory spatial index of active geofences, so a position is checked without SQL.

Each org's index is built on first use from the database and dropped when the org's
geofences change (locally at once, on other replicas through a Redis notice); a maximum age
covers a notice missed while Redis was unreachable.
"""

import asyncio
import math
import time
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np
import shapely
from geoalchemy2.shape import to_shape
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_common.logging import get_logger
from fleet_location.geofences.service import GEOFENCES_CHANGED_CHANNEL, active_geofences

log = get_logger(__name__)
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class IndexedGeofence:
    id: UUID
    name: str
    speed_limit_kph: float | None
    shape: shapely.Geometry  # the polygon, or a circle's buffered polygon (for the envelope)
    center_lat: float | None = None
    center_lon: float | None = None
    radius_m: float | None = None
    key: str = field(init=False)  # the id as a string, as detection state and events hold it

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", str(self.id))

    def contains(self, lat: float, lon: float) -> bool:
        if self.radius_m is not None:
            return haversine_m(lat, lon, self.center_lat, self.center_lon) <= self.radius_m
        return bool(shapely.intersects_xy(self.shape, lon, lat))


class OrgGeofences:
    """An STRtree over one org's geofence envelopes, with an exact check after the tree."""

    def __init__(self, geofences: list[IndexedGeofence]) -> None:
        self.geofences = geofences
        self.by_id = {g.id: g for g in geofences}
        self.id_strings = frozenset(g.key for g in geofences)
        for g in geofences:
            shapely.prepare(g.shape)
        self._tree = shapely.STRtree([g.shape for g in geofences]) if geofences else None
        # Column arrays for the exact check of every (point, candidate) pair at once.
        self._shapes = np.array([g.shape for g in geofences], dtype=object)
        self._circle = np.array([g.radius_m is not None for g in geofences], dtype=bool)
        self._center_lat = np.radians([g.center_lat or 0.0 for g in geofences])
        self._center_lon = np.radians([g.center_lon or 0.0 for g in geofences])
        self._radius_m = np.array([g.radius_m or 0.0 for g in geofences], dtype=float)

    def containing_many(self, lats: list[float], lons: list[float]) -> list[list[IndexedGeofence]]:
        """For each point, the geofences that contain it (one vectorised tree query, then
        one vectorised exact check: haversine for circles, point-in-polygon for polygons)."""
        result: list[list[IndexedGeofence]] = [[] for _ in lats]
        if self._tree is None or not lats:
            return result
        x = np.asarray(lons, dtype=float)
        y = np.asarray(lats, dtype=float)
        point_idx, tree_idx = self._tree.query(shapely.points(x, y))
        if not len(point_idx):
            return result
        inside = np.zeros(len(point_idx), dtype=bool)
        circle = self._circle[tree_idx]
        if circle.any():
            p, t = point_idx[circle], tree_idx[circle]
            inside[circle] = (
                _haversine_np(
                    np.radians(y[p]), np.radians(x[p]), self._center_lat[t], self._center_lon[t]
                )
                <= self._radius_m[t]
            )
        polygon = ~circle
        if polygon.any():
            p, t = point_idx[polygon], tree_idx[polygon]
            inside[polygon] = shapely.intersects_xy(self._shapes[t], x[p], y[p])
        geofences = self.geofences
        for p, t in zip(point_idx[inside].tolist(), tree_idx[inside].tolist(), strict=True):
            result[p].append(geofences[t])
        return result


def _haversine_np(p1: np.ndarray, l1: np.ndarray, p2: np.ndarray, l2: np.ndarray) -> np.ndarray:
    """`haversine_m` over arrays of radians."""
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def _indexed(row) -> IndexedGeofence:
    shape = to_shape(row.area)
    if row.kind == "circle" and row.center is not None:
        center = to_shape(row.center)
        return IndexedGeofence(
            row.id, row.name, row.speed_limit_kph, shape, center.y, center.x, row.radius_m
        )
    return IndexedGeofence(row.id, row.name, row.speed_limit_kph, shape)


class GeofenceIndex:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_age_s: float = 300.0
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_age_s = max_age_s
        self._orgs: dict[UUID, tuple[float, OrgGeofences]] = {}
        self._generation: dict[UUID, int] = {}
        self._locks: dict[UUID, asyncio.Lock] = {}

    def invalidate(self, org_id: UUID) -> None:
        self._orgs.pop(org_id, None)
        self._generation[org_id] = self._generation.get(org_id, 0) + 1

    def invalidate_all(self) -> None:
        for org_id in list(self._orgs):
            self.invalidate(org_id)

    async def for_org(self, org_id: UUID) -> OrgGeofences:
        cached = self._orgs.get(org_id)
        if cached is not None and time.monotonic() - cached[0] < self._max_age_s:
            return cached[1]
        lock = self._locks.setdefault(org_id, asyncio.Lock())
        async with lock:
            cached = self._orgs.get(org_id)
            if cached is not None and time.monotonic() - cached[0] < self._max_age_s:
                return cached[1]
            generation = self._generation.get(org_id, 0)
            async with self._sessionmaker() as session:
                rows = await active_geofences(session, org_id)
            built = OrgGeofences([_indexed(r) for r in rows])
            # A change that arrived while loading makes this build stale: use it once only.
            if self._generation.get(org_id, 0) == generation:
                self._orgs[org_id] = (time.monotonic(), built)
            return built

    async def listen(self, redis: Redis) -> None:
        """Drop an org's index whenever any replica changes its geofences; runs until cancelled."""
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(GEOFENCES_CHANGED_CHANNEL)
                    # Notices may have been missed while unsubscribed.
                    self.invalidate_all()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is None or message.get("type") != "message":
                            continue
                        try:
                            self.invalidate(UUID(message["data"].decode()))
                        except (ValueError, AttributeError):
                            log.warning("ignoring malformed geofence notice")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("geofence notice subscription lost", error=str(exc))
                await asyncio.sleep(1.0)
