"""After a commit: latest position per device, the geo set and the live feed, in Redis.

One Lua script per org and batch does the compare-and-set atomically on the server, so a
late, older position can never replace a newer one, even with several location replicas
writing at once; it also publishes `{"type": "position"}` only for positions that became
the newest (a late fix does not move the marker on the live map).
"""

from collections import defaultdict
from datetime import datetime

import orjson
from redis.asyncio import Redis

from fleet_common.redis import geo_key, latest_key, live_channel
from fleet_location.positions.model import Position

# Redis' geo index only covers latitudes within this bound (Web Mercator).
GEO_MAX_LAT = 85.05112878

UPDATE_LATEST = """
local latest, geo, channel = KEYS[1], KEYS[2], ARGV[1]
local newest = {}
local published = 0
for i = 2, #ARGV, 5 do
  local field, ts, doc = ARGV[i], ARGV[i + 1], ARGV[i + 2]
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
    if ARGV[i + 3] ~= '' then
      redis.call('GEOADD', geo, ARGV[i + 3], ARGV[i + 4], field)
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


def iso_utc(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so that string order is time order (the script relies on it)."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def position_document(p: Position) -> dict:
    """The JSON of `fleet:latest:{org}` values and of live `position` messages."""
    return {
        "device_id": str(p.device_id),
        "vehicle_id": str(p.vehicle_id) if p.vehicle_id else None,
        "org_id": str(p.org_id),
        "recorded_at": iso_utc(p.recorded_at),
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
        for p in sorted(positions, key=lambda p: (p.device_id, p.recorded_at)):
            by_org[p.org_id].append(p)
        async with self._redis.pipeline(transaction=False) as pipe:
            for org_id, items in by_org.items():
                args: list = [live_channel(org_id)]
                for p in items:
                    in_geo = abs(p.lat) <= GEO_MAX_LAT
                    args += [
                        str(p.device_id),
                        iso_utc(p.recorded_at),
                        orjson.dumps(position_document(p)),
                        p.lon if in_geo else "",
                        p.lat if in_geo else "",
                    ]
                await self._script(
                    keys=[latest_key(org_id), geo_key(org_id)], args=args, client=pipe
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)
