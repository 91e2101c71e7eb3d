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

_RECORDED_AT = attrgetter("recorded_at")

# Redis' geo index only covers latitudes within this bound (Web Mercator).
GEO_MAX_LAT = 85.05112878

# ARGV[1] is the live channel; each further ARGV is one position, packed as
# "device|recorded_at|lon|lat|document" (lon and lat empty when outside the geo index's
# range): one argument each keeps the command small to build, send and parse.
UPDATE_LATEST = """
local latest, geo, channel = KEYS[1], KEYS[2], ARGV[1]
local find, sub = string.find, string.sub
local newest = {}
local published = 0
for i = 2, #ARGV do
  local packed = ARGV[i]
  local a = find(packed, '|', 1, true)
  local b = find(packed, '|', a + 1, true)
  local c = find(packed, '|', b + 1, true)
  local d = find(packed, '|', c + 1, true)
  local field, ts = sub(packed, 1, a - 1), sub(packed, a + 1, b - 1)
  local lon, lat, doc = sub(packed, b + 1, c - 1), sub(packed, c + 1, d - 1), sub(packed, d + 1)
  local current = newest[field]
  if current == nil then
    current = ''
    local old = redis.call('HGET', latest, field)
    if old then
      local ok, decoded = pcall(cjson.decode, old)
      if ok and type(decoded) == 'table' and type(decoded.recorded_at) == 'string' then
        current = decoded.recorded_at
      end
    end
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


def position_document(p: Position, recorded_at: str | None = None) -> dict:
    """The JSON of `fleet:latest:{org}` values and of live `position` messages.

    Ids stay `UUID`s: orjson writes them as their canonical strings. `recorded_at` is
    `iso_utc(p.recorded_at)` when the caller has it already.
    """
    return {
        "device_id": p.device_id,
        "vehicle_id": p.vehicle_id,
        "org_id": p.org_id,
        "recorded_at": recorded_at or iso_utc(p.recorded_at),
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


class LiveUpdater:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(UPDATE_LATEST)

    async def publish(self, positions: list[Position]) -> int:
        """Apply committed positions (any order); returns how many became the newest."""
        by_org: dict = defaultdict(list)
        # Time order (so each device's positions in order; a sort on one C-compared key).
        for p in sorted(positions, key=_RECORDED_AT):
            by_org[p.org_id].append(p)
        names: dict = {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for org_id, items in by_org.items():
                args: list = [live_channel(org_id)]
                for p in items:
                    name = names.get(p.device_id)
                    if name is None:
                        name = names[p.device_id] = str(p.device_id).encode()
                    where = b"%r|%r" % (p.lon, p.lat) if abs(p.lat) <= GEO_MAX_LAT else b"|"
                    stamp = iso_utc_bytes(p.recorded_at)
                    document = orjson.dumps(position_document(p, stamp.decode()))
                    args.append(b"%s|%s|%s|%s" % (name, stamp, where, document))
                await self._script(
                    keys=[latest_key(org_id), geo_key(org_id)], args=args, client=pipe
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)
