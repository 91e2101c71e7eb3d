"""A vehicle's summary figures as a value that can be computed per time bucket and joined.

`analyse` (detection.py) reads a whole range of positions at once. A `Rollup` holds what the
same computation needs to know of one stretch of positions — say a day's — so that the
rollups of consecutive stretches, joined in time order, give exactly the figures `analyse`
gives on all their positions together (up to floating-point rounding): a trip that crosses
midnight, or a stop that spans two buckets, is joined as if it had been read in one piece.

A stretch is kept as a short list of parts, in time order:

- `Run`: still segments (standing, ignition off, or a gap of at least a stop's length). A run
  at either end of the stretch may still grow into a stop when joined with the next stretch;
  a run with parts on both sides is settled: a stop if it lasted `min_stop_duration_s`, or
  else part of the trip around it.
- `Move`: part of a trip: the segments between two runs, both end points included.
- `Settled`: the trips that lie wholly between two stops, and those stops.

In normal form a stretch is `[Run]`, or `Run, Move` followed by `Settled, Move` or not, and
by a closing `Run` or not (a stretch that ends moving has none).
Segment-local figures (idle time, position count) are plain sums. The one thing a stretch
cannot know alone is the speed of its last point when the device did not report one (it is
derived from the segment that follows): that point is kept in `last` and counted when the
stretch is joined, or finished.
"""

from dataclasses import dataclass, field
from datetime import datetime

from fleet_location.trips.detection import Fix, Summary, haversine_m


@dataclass(slots=True)
class Run:
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0


@dataclass(slots=True)
class Move:
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0


@dataclass(slots=True)
class Settled:
    trips: int = 0
    seconds: float = 0.0
    metres: float = 0.0
    max_speed_kph: float = 0.0
    stops: int = 0
    stopped_s: float = 0.0


Part = Run | Move | Settled


@dataclass(slots=True)
class Rollup:
    first: Fix
    last: Fix
    positions: int = 1
    idle_s: float = 0.0
    parts: list[Part] = field(default_factory=lambda: [Run()])

    def to_json(self) -> dict:
        return {
            "first": _fix_json(self.first),
            "last": _fix_json(self.last),
            "positions": self.positions,
            "idle_s": self.idle_s,
            "parts": [
                [type(p).__name__, *(getattr(p, f) for f in p.__slots__)] for p in self.parts
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Rollup":
        kinds = {"Run": Run, "Move": Move, "Settled": Settled}
        return cls(
            first=_fix_from_json(data["first"]),
            last=_fix_from_json(data["last"]),
            positions=data["positions"],
            idle_s=data["idle_s"],
            parts=[kinds[kind](*values) for kind, *values in data["parts"]],
        )


def _fix_json(fix: Fix) -> list:
    return [fix.recorded_at.isoformat(), fix.lat, fix.lon, fix.speed_kph, fix.ignition]


def _fix_from_json(values: list) -> Fix:
    return Fix(datetime.fromisoformat(values[0]), *values[1:])


class Rules:
    """The thresholds `analyse` splits by; rollups joined must have been made with the same."""

    __slots__ = ("min_stop_duration_s", "stop_speed_kph")

    def __init__(self, *, stop_speed_kph: float, min_stop_duration_s: float) -> None:
        self.stop_speed_kph = stop_speed_kph
        self.min_stop_duration_s = min_stop_duration_s

    def of(self, fixes: list[Fix]) -> Rollup | None:
        """The rollup of time-ordered positions (None for none)."""
        if not fixes:
            return None
        rollup = Rollup(fixes[0], fixes[0])
        for fix in fixes[1:]:
            self._extend(rollup, fix)
        return rollup

    def join(self, left: Rollup | None, right: Rollup | None) -> Rollup | None:
        """The rollup of `left`'s positions followed by `right`'s."""
        if left is None or right is None:
            return left or right
        joined = Rollup(
            left.first, left.last, left.positions, left.idle_s, [_copy(p) for p in left.parts]
        )
        self._step(joined, right.first)  # the segment between them
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
        parts = [_copy(p) for p in rollup.parts]
        last_speed = rollup.last.speed_kph or 0.0
        parts[-1].max_speed_kph = max(parts[-1].max_speed_kph, last_speed)
        trips = Settled()
        for index, part in enumerate(parts):
            if isinstance(part, Settled):
                _add_settled(trips, part)
            elif isinstance(part, Move):
                # A run at an end that is no stop belongs to the trip beside it.
                for edge in parts[max(0, index - 1) : index + 2 : 2]:
                    if isinstance(edge, Run) and edge.seconds < self.min_stop_duration_s:
                        _absorb(part, edge)
                _add_trip(trips, part)
        result.trips = trips.trips
        result.distance_m = trips.metres
        result.driving_s = trips.seconds
        result.max_speed_kph = trips.max_speed_kph
        if result.driving_s > 0:
            result.avg_speed_kph = result.distance_m / result.driving_s * 3.6
        return result

    def stopped_s(self, rollup: Rollup | None) -> float:
        """Time spent in stops, as `analyse`'s stops list would sum it."""
        if rollup is None or rollup.positions < 2:
            return 0.0
        total = sum(p.stopped_s for p in rollup.parts if isinstance(p, Settled))
        ends = {id(p): p for p in (rollup.parts[0], rollup.parts[-1]) if isinstance(p, Run)}
        return total + sum(
            p.seconds for p in ends.values() if p.seconds >= self.min_stop_duration_s
        )

    # --- building -------------------------------------------------------------------------

    def _extend(self, rollup: Rollup, fix: Fix) -> None:
        self._step(rollup, fix)
        rollup.last = fix
        rollup.positions += 1

    def _step(self, rollup: Rollup, fix: Fix) -> None:
        """Add the segment from `rollup.last` to `fix` (the point `fix` itself excluded)."""
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
            else:
                self._append(rollup, Run(seconds, metres, speed))
        elif isinstance(tail, Move):
            tail.seconds += seconds
            tail.metres += metres
        else:
            self._append(rollup, Move(seconds, metres, speed))

    def _append(self, rollup: Rollup, part: Part) -> None:
        """Add `part` at the end and bring the parts back to normal form."""
        parts = rollup.parts
        tail = parts[-1]
        if type(tail) is type(part):  # a Run or a Move grows (a Settled is never appended)
            tail.seconds += part.seconds
            tail.metres += part.metres
            tail.max_speed_kph = max(tail.max_speed_kph, part.max_speed_kph)
            return
        parts.append(part)
        # Only a Move can make the run before it internal: settle that run.
        if len(parts) < 3 or not isinstance(parts[-2], Run):
            return
        before, run, after = parts[-3], parts[-2], parts[-1]
        if run.seconds < self.min_stop_duration_s:
            # Too short for a stop: it and the move after it continue the trip before it.
            del parts[-2:]
            _absorb(before, run)
            _absorb(before, after)
            return
        parts[-2] = Settled(stops=1, stopped_s=run.seconds)
        # Settled, Move, Settled: that move was a whole trip between two stops.
        if len(parts) >= 4 and isinstance(parts[-4], Settled):
            settled, trip, stop = parts[-4], parts[-3], parts[-2]
            _add_trip(settled, trip)
            _add_settled(settled, stop)
            del parts[-3:-1]


def _values(part: Part) -> list:
    return [getattr(part, name) for name in part.__slots__]


def _copy(part: Part) -> Part:
    return type(part)(*_values(part))


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
