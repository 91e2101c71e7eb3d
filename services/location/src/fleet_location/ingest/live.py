"""After a commit: latest position per device, the geo set and the live feed, in Redis.

One Lua script per org and batch does the compare-and-set atomically on the server, so a
late, older position can never replace a newer one, even with several location replicas
writing at once; it also publishes `{"type": "position"}` only for positions that became
the newest (a late fix does not move the marker on the live map).
"""

from collections import defaultdict
from datetime import UTC, datetime
from operator import attrgetter

import orjson
from redis.asyncio import Redis

from fleet_common.redis import geo_key, latest_key, live_channel
from fleet_location.positions.model import Position
from fleet_location.redis_scripts import queue_script

_RECORDED_AT = attrgetter("recorded_at")

# Bounds the per-device cache of document heads (a device moved to another vehicle or
# org gets a new entry; clearing now and then drops the stale ones).
MAX_CACHED_HEADS = 100_000

# Redis' geo index only covers latitudes within this bound (Web Mercator).
GEO_MAX_LAT = 85.05112878

# ARGV[1] is the live channel, ARGV[2] the positions, one per line, each packed as
# "device|recorded_at|lon|lat|document" (lon and lat empty when outside the geo index's
# range). One argument for the lot keeps the command cheap to build, send and parse; no
# part can hold a newline (JSON escapes it in strings).
UPDATE_LATEST = """
local latest, geo, channel, data = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local find, sub, match = string.find, string.sub, string.match
local newest = {}
local published = 0
local at, size = 1, #data
while at <= size do
  local stop = find(data, '\\n', at, true) or size + 1
  local a = find(data, '|', at, true)
  local b = find(data, '|', a + 1, true)
  local c = find(data, '|', b + 1, true)
  local d = find(data, '|', c + 1, true)
  local field, ts = sub(data, at, a - 1), sub(data, a + 1, b - 1)
  local lon, lat, doc = sub(data, b + 1, c - 1), sub(data, c + 1, d - 1), sub(data, d + 1, stop - 1)
  at = stop + 1
  local current = newest[field]
  if current == nil then
    -- Our own documents: their first "recorded_at" is the top-level one (ids come before
    -- it, attrs after), so a pattern does what decoding the whole document would.
    local old = redis.call('HGET', latest, field)
    current = old and match(old, '"recorded_at":"([^"]*)"') or ''
  end
  if ts > current then
    redis.call('HSET', latest, field, doc)
    if lon ~= '' then
      redis.call('GEOADD', geo, lon, lat, field)
    else
      redis.call('ZREM', geo, field)
    end
    redis.call('PUBLISH', channel, '{"type":"position","data":' .. doc .. '}')
    newest[field] = ts
    published = published + 1
  else
    newest[field] = current
  end
end
return published
"""


def iso_utc_bytes(moment: datetime) -> bytes:
    """Fixed-width ISO 8601 UTC, so that string order is time order (the script relies on it).

    orjson formats a datetime in C, an order of magnitude faster than `isoformat`, but
    leaves out a zero fraction: that one case gets its ".000000" here.
    """
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    quoted = orjson.dumps(moment, option=orjson.OPT_UTC_Z)
    if len(quoted) == 29:  # "YYYY-MM-DDTHH:MM:SS.ffffffZ" and its quotes
        return quoted[1:-1]
    return quoted[1:20] + b".000000Z"


def iso_utc(moment: datetime) -> str:
    """`iso_utc_bytes` as a string."""
    return iso_utc_bytes(moment).decode()


def _measured(p: Position) -> dict:
    """The document's fields after `recorded_at`, in order."""
    return {
        "lat": p.lat,
        "lon": p.lon,
        "speed_kph": p.speed_kph,
        "heading_deg": p.heading_deg,
        "altitude_m": p.altitude_m,
        "accuracy_m": p.accuracy_m,
        "battery_pct": p.battery_pct,
        "ignition": p.ignition,
        "odometer_km": p.odometer_km,
        "attrs": p.attrs,
    }


def position_document(p: Position) -> dict:
    """The JSON of `fleet:latest:{org}` values and of live `position` messages (the
    updater writes these bytes from a cached head; see `LiveUpdater._document`).

    Ids stay `UUID`s: orjson writes them as their canonical strings.
    """
    return {
        "device_id": p.device_id,
        "vehicle_id": p.vehicle_id,
        "org_id": p.org_id,
        "recorded_at": iso_utc(p.recorded_at),
        **_measured(p),
    }


class LiveUpdater:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(UPDATE_LATEST)
        # Per (device, vehicle, org): the hash field and the document's fixed start. orjson
        # writes a UUID several times slower than the rest of a position: do it once.
        self._heads: dict[tuple, tuple[bytes, bytes]] = {}

    def _head(self, p: Position) -> tuple[bytes, bytes]:
        key = (p.device_id, p.vehicle_id, p.org_id)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= MAX_CACHED_HEADS:
                self._heads.clear()
            ids = orjson.dumps(
                {"device_id": p.device_id, "vehicle_id": p.vehicle_id, "org_id": p.org_id}
            )
            head = self._heads[key] = (str(p.device_id).encode(), ids[:-1] + b',"recorded_at":"')
        return head

    @staticmethod
    def _document(p: Position, head: bytes, stamp: bytes) -> bytes:
        """`orjson.dumps(position_document(p))`, from the cached head and the time stamp."""
        rest = orjson.dumps(_measured(p))
        return b'%s%s",%s' % (head, stamp, rest[1:])

    async def publish(self, positions: list[Position]) -> int:
        """Apply committed positions (any order; cheapest in time order, as the pipeline
        passes them); returns how many became the newest."""
        by_org: dict = defaultdict(list)
        # Time order (so each device's positions in order; a sort on one C-compared key).
        for p in sorted(positions, key=_RECORDED_AT):
            by_org[p.org_id].append(p)
        async with self._redis.pipeline(transaction=False) as pipe:
            for org_id, items in by_org.items():
                lines = []
                for p in items:
                    name, head = self._head(p)
                    where = b"%r|%r" % (p.lon, p.lat) if abs(p.lat) <= GEO_MAX_LAT else b"|"
                    stamp = iso_utc_bytes(p.recorded_at)
                    lines.append(
                        b"%s|%s|%s|%s" % (name, stamp, where, self._document(p, head, stamp))
                    )
                await queue_script(
                    pipe,
                    self._script,
                    keys=[latest_key(org_id), geo_key(org_id)],
                    args=[live_channel(org_id), b"\n".join(lines)],
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)
