"""A vehicle's summary figures, trips and stops as a value computed per time bucket and joined.

`analyse` (detection.py) reads a whole range of positions at once. A `Rollup` holds what the
same computation needs to know of one stretch of positions — say a day's — so that the
rollups of consecutive stretches, joined in time order, give exactly the figures, trips and
stops `analyse` gives on all their positions together (up to floating-point rounding in the
sums): a trip that crosses midnight, or a stop that spans two buckets, is joined as if it had
been read in one piece.

A stretch is kept as a short list of parts, in time order, each knowing the point it starts
at (it ends where the next part starts, the last one at the stretch's last point):

- `Run`: still segments (standing, ignition off, or a gap of at least a stop's length). A run
  at either end of the stretch may still grow into a stop when joined with the next stretch;
  a run with parts on both sides is settled: a stop if it lasted `min_stop_duration_s`, or
  else part of the trip around it.
- `Move`: part of a trip: the segments between two runs, both end points included.
- `Settled`: the trips that lie wholly between two stops, and those stops: their figures, and
  (when loaded, see below) the trips and stops themselves in time order.

In normal form a stretch is `[Run]`, or `Run, Move` followed by `Settled, Move` or not, and
by a closing `Run` or not (a stretch that ends moving has none).
Segment-local figures (idle time, position count) are plain sums. The one thing a stretch
cannot know alone is the speed of its last point when the device did not report one (it is
derived from the segment that follows): that point is kept in `last` and counted when the
stretch is joined, or finished. The speed of its first point (`first_speed_kph`) is kept too:
joined after another stretch, it counts in the part that ends there (a trip that ends where a
stop in the next bucket starts).

Why the settled trips and stops live in the rollup (and not in a table of their own): a trip
list over a year is then the settled lists of the year's day rollups, concatenated, plus what
the joins between days settle (the trip across midnight) and the open edges read raw — the
same join the summary does, so one job, one staleness mark and one test keep both exact.
They are stored apart from the figures (`segments_json`), so that the summary, which reads
every vehicle's rollups, never decodes them: a `Settled` read without them has `segments`
None, and any join with it too.
"""

from dataclasses import dataclass, field
from datetime import datetime

from fleet_location.trips.detection import Fix, Place, Stop, Summary, Trip, haversine_m


@dataclass(slots=True)
class Run:
    start: Fix
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0
    ignition_on: bool = False  # any of its segments starts with the ignition on


@dataclass(slots=True)
class Move:
    start: Fix
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0


@dataclass(slots=True)
class Settled:
    start: Fix  # where its first stop starts
    trips: int = 0
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0
    stops: int = 0
    stopped_s: float = 0.0
    segments: list[Trip | Stop] | None = None


Part = Run | Move | Settled


@dataclass(slots=True)
class Rollup:
    first: Fix
    last: Fix
    positions: int = 1
    idle_s: float = 0.0
    parts: list[Part] = field(default_factory=list)
    # Reported, or derived from the first segment; None while there is only one position.
    first_speed_kph: float | None = None

    def to_json(self) -> dict:
        """The figures (segments apart: `segments_json`)."""
        return {
            "first": _fix_json(self.first),
            "last": _fix_json(self.last),
            "positions": self.positions,
            "idle_s": self.idle_s,
            "parts": [_part_json(p) for p in self.parts],
            "first_speed_kph": self.first_speed_kph,
        }

    def segments_json(self) -> list:
        """Each `Settled` part's trips and stops, in part order."""
        return [
            [_segment_json(s) for s in p.segments or ()]
            for p in self.parts
            if isinstance(p, Settled)
        ]

    @classmethod
    def from_json(cls, data: dict, segments: list | None = None) -> "Rollup":
        """Read back `to_json`; with `segments_json`'s value, the trips and stops too."""
        parts = [_part_from_json(values) for values in data["parts"]]
        if segments is not None:
            settled = (p for p in parts if isinstance(p, Settled))
            for part, items in zip(settled, segments, strict=True):
                part.segments = [_segment_from_json(s) for s in items]
        return cls(
            first=_fix_from_json(data["first"]),
            last=_fix_from_json(data["last"]),
            positions=data["positions"],
            idle_s=data["idle_s"],
            parts=parts,
            first_speed_kph=data["first_speed_kph"],
        )


def _fix_json(fix: Fix) -> list:
    return [fix.recorded_at.isoformat(), fix.lat, fix.lon, fix.speed_kph, fix.ignition]


def _fix_from_json(values: list) -> Fix:
    return Fix(datetime.fromisoformat(values[0]), *values[1:])


_FIGURES = {
    "Run": ("seconds", "metres", "max_speed_kph", "ignition_on"),
    "Move": ("seconds", "metres", "max_speed_kph"),
    "Settled": ("trips", "seconds", "metres", "max_speed_kph", "stops", "stopped_s"),
}
_KINDS = {"Run": Run, "Move": Move, "Settled": Settled}


def _part_json(part: Part) -> list:
    kind = type(part).__name__
    return [kind, _fix_json(part.start), *(getattr(part, f) for f in _FIGURES[kind])]


def _part_from_json(values: list) -> Part:
    kind, start, *figures = values
    return _KINDS[kind](_fix_from_json(start), *figures)


def _segment_json(segment: Trip | Stop) -> list:
    if isinstance(segment, Trip):
        return [
            "trip",
            segment.start_time.isoformat(),
            segment.end_time.isoformat(),
            segment.start.lat,
            segment.start.lon,
            segment.end.lat,
            segment.end.lon,
            segment.distance_m,
            segment.max_speed_kph,
        ]
    return [
        "stop",
        segment.start_time.isoformat(),
        segment.end_time.isoformat(),
        segment.place.lat,
        segment.place.lon,
        segment.ignition_on,
    ]


def _segment_from_json(values: list) -> Trip | Stop:
    start_time = datetime.fromisoformat(values[1])
    end_time = datetime.fromisoformat(values[2])
    if values[0] == "trip":
        return _trip(start_time, end_time, Place(*values[3:5]), Place(*values[5:7]), *values[7:])
    return Stop(
        start_time=start_time,
        end_time=end_time,
        place=Place(values[3], values[4]),
        duration_s=(end_time - start_time).total_seconds(),
        ignition_on=values[5],
    )


def _trip(
    start_time: datetime,
    end_time: datetime,
    start: Place,
    end: Place,
    distance_m: float,
    max_speed_kph: float,
) -> Trip:
    """A trip with its duration and average speed derived as `analyse` derives them."""
    duration_s = (end_time - start_time).total_seconds()
    return Trip(
        start_time=start_time,
        end_time=end_time,
        start=start,
        end=end,
        distance_m=distance_m,
        duration_s=duration_s,
        max_speed_kph=max_speed_kph,
        avg_speed_kph=distance_m / duration_s * 3.6 if duration_s > 0 else 0.0,
    )


def _seconds(start: Fix, end: Fix) -> float:
    # From the timestamps, as `analyse` measures stops and trips (not the segments' float sum).
    return (end.recorded_at - start.recorded_at).total_seconds()


class Rules:
    """The thresholds `analyse` splits by; rollups joined must have been made with the same."""

    __slots__ = ("min_stop_duration_s", "stop_speed_kph")

    def __init__(self, *, stop_speed_kph: float, min_stop_duration_s: float) -> None:
        self.stop_speed_kph = stop_speed_kph
        self.min_stop_duration_s = min_stop_duration_s

    def of(self, fixes: list[Fix]) -> Rollup | None:
        """The rollup of time-ordered positions (None for none), segments included."""
        if not fixes:
            return None
        rollup = Rollup(fixes[0], fixes[0], parts=[Run(fixes[0])])
        for fix in fixes[1:]:
            self._extend(rollup, fix)
        return rollup

    def of_runs(self, last: Fix, positions: int, idle_s: float, runs: list[tuple]) -> Rollup:
        """The rollup `of` gives, from its positions' runs of like segments, as the database
        computes them (rollups.HOUR_PARTS_SQL): for each run in time order, `(still, start,
        seconds, metres, max_speed_kph, first_speed_kph, ignition_on)`, where `max_speed_kph`
        counts the speed of the point the run ends at (the next run's `first_speed_kph`);
        then the last position, how many there are and their idle time. `of` adds the same
        segments one by one; the figures differ by the order of their sums (rounding)."""
        if not runs:
            return Rollup(last, last, parts=[Run(last)])
        first = runs[0][1]
        rollup = Rollup(first, last, positions, idle_s, [Run(first)], runs[0][5])
        for still, start, seconds, metres, max_speed_kph, first_speed_kph, ignition_on in runs:
            if still:
                part: Part = Run(start, seconds, metres, max_speed_kph, ignition_on)
            else:
                tail = rollup.parts[-1]  # it ends where this move starts
                tail.max_speed_kph = max(tail.max_speed_kph, first_speed_kph)
                part = Move(start, seconds, metres, max_speed_kph)
            self._append(rollup, part)
        return rollup

    def join(self, left: Rollup | None, right: Rollup | None) -> Rollup | None:
        """The rollup of `left`'s positions followed by `right`'s."""
        return self.join_all([left, right])

    def join_all(self, rollups: list[Rollup | None]) -> Rollup | None:
        """The rollup of all their positions, in the order given. The inputs are left as they
        were; the result is built in one copy, so a year of trips is not copied per day."""
        present = [r for r in rollups if r is not None]
        if not present:
            return None
        head = present[0]
        joined = Rollup(
            head.first,
            head.last,
            head.positions,
            head.idle_s,
            [_copy(p) for p in head.parts],
            head.first_speed_kph,
        )
        for right in present[1:]:
            speed = self._step(joined, right.first)  # the segment between them
            if joined.positions == 1:
                joined.first_speed_kph = speed
            # A single point's speed may be known only from the segment after it: the next
            # step counts it in the part that ends there, as for the last point.
            if right.positions > 1:
                tail = joined.parts[-1]  # it ends at right.first
                tail.max_speed_kph = max(tail.max_speed_kph, right.first_speed_kph)
                for part in right.parts:
                    self._append(joined, _copy(part))
            joined.last = right.last
            joined.positions += right.positions
            joined.idle_s += right.idle_s
        return joined

    def summary(self, rollup: Rollup | None) -> Summary:
        """The figures `analyse` reports for the rollup's positions."""
        result = Summary()
        if rollup is None:
            return result
        result.positions = rollup.positions
        result.idle_s = rollup.idle_s
        if rollup.positions < 2:
            return result
        parts = self._finished(rollup)
        trips = Settled(rollup.first)
        for index, part in enumerate(parts):
            if isinstance(part, Settled):
                _add_settled(trips, part)
            elif isinstance(part, Move):
                for edge in self._short_edges(parts, index, rollup.last):
                    _absorb(part, parts[edge])
                _add_trip(trips, part)
        result.trips = trips.trips
        result.distance_m = trips.metres
        result.driving_s = trips.seconds
        result.max_speed_kph = trips.max_speed_kph
        if result.driving_s > 0:
            result.avg_speed_kph = result.distance_m / result.driving_s * 3.6
        return result

    def segments(self, rollup: Rollup | None) -> list[Trip | Stop]:
        """The trips and stops `analyse` lists for the rollup's positions, in time order.
        The rollup must carry its segments (built by `of`, or read with them)."""
        if rollup is None or rollup.positions < 2:
            return []
        parts = self._finished(rollup)
        result: list[Trip | Stop] = []
        for index, part in enumerate(parts):
            end = _end(parts, index, rollup.last)
            if isinstance(part, Settled):
                if part.segments is None:
                    raise ValueError("a rollup read without its segments")
                result.extend(part.segments)
            elif isinstance(part, Run):
                if _seconds(part.start, end) >= self.min_stop_duration_s:
                    result.append(_stop(part, end))
            else:
                # A run at an end that is no stop belongs to the trip beside it.
                start = part.start
                for edge in self._short_edges(parts, index, rollup.last):
                    _absorb(part, parts[edge])
                    if edge < index:
                        start = parts[edge].start
                    else:
                        end = _end(parts, edge, rollup.last)
                result.append(_trip_of(part, start, end))
        return result

    def stopped_s(self, rollup: Rollup | None) -> float:
        """Time spent in stops, as `analyse`'s stops list would sum it."""
        if rollup is None or rollup.positions < 2:
            return 0.0
        total = sum(p.stopped_s for p in rollup.parts if isinstance(p, Settled))
        parts = rollup.parts
        ends = {0, len(parts) - 1}
        for index in ends:
            part = parts[index]
            if isinstance(part, Run):
                seconds = _seconds(part.start, _end(parts, index, rollup.last))
                if seconds >= self.min_stop_duration_s:
                    total += seconds
        return total

    # --- finishing ------------------------------------------------------------------------

    def _finished(self, rollup: Rollup) -> list[Part]:
        """Copies of the parts, the last point's speed counted (no segment follows it)."""
        parts = [_copy(p) for p in rollup.parts]
        last_speed = rollup.last.speed_kph or 0.0
        parts[-1].max_speed_kph = max(parts[-1].max_speed_kph, last_speed)
        return parts

    def _short_edges(self, parts: list[Part], index: int, last: Fix) -> list[int]:
        """Where the runs beside the move at `index` are, that are too short to be stops."""
        return [
            i
            for i in (index - 1, index + 1)
            if 0 <= i < len(parts)
            and isinstance(parts[i], Run)
            and _seconds(parts[i].start, _end(parts, i, last)) < self.min_stop_duration_s
        ]

    # --- building -------------------------------------------------------------------------

    def _extend(self, rollup: Rollup, fix: Fix) -> None:
        speed = self._step(rollup, fix)
        if rollup.positions == 1:
            rollup.first_speed_kph = speed
        rollup.last = fix
        rollup.positions += 1

    def _step(self, rollup: Rollup, fix: Fix) -> float:
        """Add the segment from `rollup.last` to `fix` (the point `fix` itself excluded);
        returns the speed at `rollup.last`, known now."""
        prev = rollup.last
        seconds = (fix.recorded_at - prev.recorded_at).total_seconds()
        metres = haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
        if prev.speed_kph is not None:
            speed = prev.speed_kph
        elif seconds > 0:
            speed = metres / seconds * 3.6
        else:
            speed = 0.0
        slow = speed < self.stop_speed_kph
        if prev.ignition is True and slow and seconds < self.min_stop_duration_s:
            rollup.idle_s += seconds
        still = prev.ignition is False or slow or seconds >= self.min_stop_duration_s
        # The previous point's speed is known now: it belongs to the part that ends there.
        tail = rollup.parts[-1]
        tail.max_speed_kph = max(tail.max_speed_kph, speed)
        if still:
            if isinstance(tail, Run):
                tail.seconds += seconds
                tail.metres += metres
                tail.ignition_on = tail.ignition_on or prev.ignition is True
            else:
                self._append(rollup, Run(prev, seconds, metres, speed, prev.ignition is True))
        elif isinstance(tail, Move):
            tail.seconds += seconds
            tail.metres += metres
        else:
            self._append(rollup, Move(prev, seconds, metres, speed))
        return speed

    def _append(self, rollup: Rollup, part: Part) -> None:
        """Add `part` at the end and bring the parts back to normal form."""
        parts = rollup.parts
        tail = parts[-1]
        if type(tail) is type(part) and not isinstance(part, Settled):  # a Run or a Move grows
            tail.seconds += part.seconds
            tail.metres += part.metres
            tail.max_speed_kph = max(tail.max_speed_kph, part.max_speed_kph)
            if isinstance(part, Run):
                tail.ignition_on = tail.ignition_on or part.ignition_on
            return
        parts.append(part)
        if isinstance(part, Settled):
            # A joined stretch's settled part after a move after a settled part: that move
            # was a whole trip between two stops (left unmerged, the parts of a month's join
            # would grow with every bucket, and so would each join's cost).
            if len(parts) >= 3 and isinstance(parts[-2], Move) and isinstance(parts[-3], Settled):
                _merge_trip(parts)
            return
        # Only a Move can make the run before it internal: settle that run.
        if len(parts) < 3 or not isinstance(parts[-2], Run):
            return
        before, run, after = parts[-3], parts[-2], parts[-1]
        if _seconds(run.start, after.start) < self.min_stop_duration_s:
            # Too short for a stop: it and the move after it continue the trip before it.
            del parts[-2:]
            _absorb(before, run)
            _absorb(before, after)
            return
        stop = _stop(run, after.start)
        parts[-2] = Settled(run.start, stops=1, stopped_s=stop.duration_s, segments=[stop])
        if len(parts) >= 4 and isinstance(parts[-4], Settled):
            del parts[-1]
            _merge_trip(parts)
            parts.append(after)


def _merge_trip(parts: list[Part]) -> None:
    """The last three parts, Settled, Move, Settled, into one: the move was a whole trip."""
    settled, trip, closing = parts[-3:]
    _add_trip(settled, trip)
    if settled.segments is not None:
        settled.segments.append(_trip_of(trip, trip.start, closing.start))
    _add_settled(settled, closing)
    del parts[-2:]


def _end(parts: list[Part], index: int, last: Fix) -> Fix:
    """Where the part at `index` ends: where the next one starts, or at the last point."""
    return parts[index + 1].start if index + 1 < len(parts) else last


def _stop(run: Run, end: Fix) -> Stop:
    return Stop(
        start_time=run.start.recorded_at,
        end_time=end.recorded_at,
        place=Place(run.start.lat, run.start.lon),
        duration_s=_seconds(run.start, end),
        ignition_on=run.ignition_on,
    )


def _trip_of(move: Move, start: Fix, end: Fix) -> Trip:
    return _trip(
        start.recorded_at,
        end.recorded_at,
        Place(start.lat, start.lon),
        Place(end.lat, end.lon),
        move.metres,
        move.max_speed_kph,
    )


def _copy(part: Part) -> Part:
    copied = type(part)(*(getattr(part, name) for name in part.__slots__))
    if isinstance(copied, Settled) and copied.segments is not None:
        copied.segments = list(copied.segments)  # appended to when joined
    return copied


def _absorb(move: Move, run: Run) -> None:
    move.seconds += run.seconds
    move.metres += run.metres
    move.max_speed_kph = max(move.max_speed_kph, run.max_speed_kph)


def _add_trip(settled: Settled, move: Move) -> None:
    settled.trips += 1
    settled.seconds += move.seconds
    settled.metres += move.metres
    settled.max_speed_kph = max(settled.max_speed_kph, move.max_speed_kph)


def _add_settled(into: Settled, other: Settled) -> None:
    into.trips += other.trips
    into.seconds += other.seconds
    into.metres += other.metres
    into.max_speed_kph = max(into.max_speed_kph, other.max_speed_kph)
    into.stops += other.stops
    into.stopped_s += other.stopped_s
    if into.segments is None or other.segments is None:
        into.segments = None
    else:
        into.segments.extend(other.segments)
