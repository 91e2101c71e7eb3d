"""Splitting a vehicle's time-ordered positions into trips and stops, and summing them up.

A stop is a stretch where the vehicle stands still (ignition off, or speed under
`stop_speed_kph`), or sends nothing, for at least `min_stop_duration_s`. Everything between
two stops is a trip. Idle time is time standing still with the ignition on.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(slots=True)
class Fix:
    recorded_at: datetime
    lat: float
    lon: float
    speed_kph: float | None
    ignition: bool | None


@dataclass(slots=True)
class Place:
    lat: float
    lon: float


@dataclass(slots=True)
class Trip:
    start_time: datetime
    end_time: datetime
    start: Place
    end: Place
    distance_m: float
    duration_s: float
    max_speed_kph: float
    avg_speed_kph: float


@dataclass(slots=True)
class Stop:
    start_time: datetime
    end_time: datetime
    place: Place
    duration_s: float
    ignition_on: bool


@dataclass(slots=True)
class Summary:
    distance_m: float = 0.0
    driving_s: float = 0.0
    idle_s: float = 0.0
    max_speed_kph: float = 0.0
    avg_speed_kph: float = 0.0
    trips: int = 0
    positions: int = 0


@dataclass(slots=True)
class Analysis:
    trips: list[Trip] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)


def analyse(fixes: Iterable[Fix], *, stop_speed_kph: float, min_stop_duration_s: float) -> Analysis:
    points = list(fixes)
    result = Analysis()
    result.summary.positions = len(points)
    if len(points) < 2:
        return result
    n = len(points)
    seconds = [
        (points[i + 1].recorded_at - points[i].recorded_at).total_seconds() for i in range(n - 1)
    ]
    metres = [
        haversine_m(points[i].lat, points[i].lon, points[i + 1].lat, points[i + 1].lon)
        for i in range(n - 1)
    ]

    def speed_at(i: int) -> float:
        reported = points[i].speed_kph
        if reported is not None:
            return reported
        if i < n - 1 and seconds[i] > 0:
            return metres[i] / seconds[i] * 3.6
        return 0.0

    # Segment i (point i -> i+1) is "still" when the vehicle stands at point i, or when the
    # device said nothing for a whole stop's length.
    still = [
        points[i].ignition is False
        or speed_at(i) < stop_speed_kph
        or seconds[i] >= min_stop_duration_s
        for i in range(n - 1)
    ]
    # Runs of still segments long enough to be stops, as (first point, last point).
    stops: list[tuple[int, int]] = []
    i = 0
    while i < n - 1:
        if not still[i]:
            i += 1
            continue
        j = i
        while j < n - 1 and still[j]:
            j += 1
        # segments i..j-1 are still: the vehicle stood from point i to point j
        if (points[j].recorded_at - points[i].recorded_at).total_seconds() >= min_stop_duration_s:
            stops.append((i, j))
        i = j
    for first, last in stops:
        ignition_on = any(points[k].ignition is True for k in range(first, last))
        result.stops.append(
            Stop(
                start_time=points[first].recorded_at,
                end_time=points[last].recorded_at,
                place=Place(points[first].lat, points[first].lon),
                duration_s=(points[last].recorded_at - points[first].recorded_at).total_seconds(),
                ignition_on=ignition_on,
            )
        )
    # Trips: the stretches between stops that contain movement.
    bounds = [0] + [b for stop in stops for b in stop] + [n - 1]
    summary = result.summary
    for k in range(0, len(bounds), 2):
        start, end = bounds[k], bounds[k + 1]
        if end <= start or all(still[s] for s in range(start, end)):
            continue
        distance = sum(metres[start:end])
        duration = (points[end].recorded_at - points[start].recorded_at).total_seconds()
        max_speed = max(speed_at(s) for s in range(start, end + 1))
        result.trips.append(
            Trip(
                start_time=points[start].recorded_at,
                end_time=points[end].recorded_at,
                start=Place(points[start].lat, points[start].lon),
                end=Place(points[end].lat, points[end].lon),
                distance_m=distance,
                duration_s=duration,
                max_speed_kph=max_speed,
                avg_speed_kph=distance / duration * 3.6 if duration > 0 else 0.0,
            )
        )
        summary.distance_m += distance
        summary.driving_s += duration
        summary.max_speed_kph = max(summary.max_speed_kph, max_speed)
    summary.trips = len(result.trips)
    summary.idle_s = sum(
        seconds[s]
        for s in range(n - 1)
        if points[s].ignition is True
        and speed_at(s) < stop_speed_kph
        and seconds[s] < min_stop_duration_s
    )
    if summary.driving_s > 0:
        summary.avg_speed_kph = summary.distance_m / summary.driving_s * 3.6
    return result
