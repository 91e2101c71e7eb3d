"""Rollups joined in time order give exactly what `analyse` gives on all positions at once."""

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_location.trips.detection import Fix, Stop, Trip, analyse
from fleet_location.trips.rollup import Rollup, Rules

RULES = dict(stop_speed_kph=3.0, min_stop_duration_s=180.0)
T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


@st.composite
def drives(draw) -> list[Fix]:
    """Routes mixing driving, idling, parking, gaps and missing speeds."""
    count = draw(st.integers(1, 60))
    fixes, t, lat, lon = [], T0, 10.77, 106.70
    for _ in range(count):
        t += timedelta(seconds=draw(st.sampled_from([0, 1, 5, 30, 60, 179, 180, 400, 3600])))
        moving = draw(st.booleans())
        if moving:
            lat += draw(st.floats(-0.01, 0.01))
            lon += draw(st.floats(-0.01, 0.01))
        speed = draw(st.one_of(st.none(), st.floats(0, 140) if moving else st.floats(0, 4)))
        ignition = draw(st.sampled_from([True, False, None]))
        fixes.append(Fix(t, lat, lon, speed, ignition))
    return fixes


def _figures(summary) -> dict:
    return {
        "positions": summary.positions,
        "trips": summary.trips,
        "distance_m": pytest.approx(summary.distance_m, abs=1e-6),
        "driving_s": pytest.approx(summary.driving_s, abs=1e-6),
        "idle_s": pytest.approx(summary.idle_s, abs=1e-6),
        "max_speed_kph": pytest.approx(summary.max_speed_kph, abs=1e-9),
        "avg_speed_kph": pytest.approx(summary.avg_speed_kph, abs=1e-6),
    }


def _segments(trips: list[Trip], stops: list[Stop]) -> list:
    """Trips and stops in time order, their sums to rounding, the rest exactly."""
    rows = []
    for trip in trips:
        values = dataclasses.asdict(trip)
        for name in ("distance_m", "avg_speed_kph"):
            values[name] = pytest.approx(values[name], abs=1e-6)
        rows.append(("trip", values))
    rows += [("stop", dataclasses.asdict(stop)) for stop in stops]
    return sorted(rows, key=lambda row: (row[1]["start_time"], row[0] == "stop"))


def _listed(rules: Rules, rollup) -> list:
    segments = rules.segments(rollup)
    return _segments(
        [s for s in segments if isinstance(s, Trip)], [s for s in segments if isinstance(s, Stop)]
    )


def _stored(piece: Rollup | None, with_segments: bool) -> Rollup | None:
    """Stored and read back between buckets, as the rollup table does."""
    if piece is None:
        return None
    return Rollup.from_json(piece.to_json(), piece.segments_json() if with_segments else None)


@settings(max_examples=300, deadline=None)
@given(drives(), st.lists(st.integers(0, 60), max_size=6), st.booleans())
def test_joined_rollups_equal_the_raw_analysis(fixes, cuts, one_by_one):
    rules = Rules(**RULES)
    raw = analyse(fixes, **RULES)
    bounds = sorted({0, len(fixes), *(c for c in cuts if c <= len(fixes))})
    pieces = [rules.of(fixes[a:b]) for a, b in itertools.pairwise(bounds)]
    stored = [_stored(piece, with_segments=True) for piece in pieces]
    if one_by_one:  # as days are made of hours
        joined = None
        for piece in stored:
            joined = rules.join(joined, piece)
    else:  # as a range is made of days and hours
        joined = rules.join_all(stored)
    assert _figures(rules.summary(joined)) == _figures(raw.summary)
    assert rules.stopped_s(joined) == pytest.approx(sum(s.duration_s for s in raw.stops))
    assert _listed(rules, joined) == _segments(raw.trips, raw.stops)
    # Read without their segments (as the summary reads them): the same figures.
    bare = rules.join_all([_stored(piece, with_segments=False) for piece in pieces])
    assert _figures(rules.summary(bare)) == _figures(raw.summary)
    # Joining leaves its inputs as they were: a second join gives the same.
    assert _listed(rules, rules.join_all(stored)) == _segments(raw.trips, raw.stops)


def test_a_trip_across_midnight_and_a_stop_across_two_buckets():
    rules = Rules(**RULES)
    fixes = []
    t = T0 + timedelta(minutes=50)  # 23:50
    for i in range(40):  # 20 minutes at 50 km/h, across midnight
        fixes.append(Fix(t, 10.0 + i * 0.00417, 106.0, 50.0, True))
        t += timedelta(seconds=30)
    for _ in range(30):  # then 15 minutes parked
        fixes.append(Fix(t, fixes[-1].lat, 106.0, 0.0, False))
        t += timedelta(seconds=30)
    midnight = T0 + timedelta(hours=1)
    days = [
        [f for f in fixes if f.recorded_at < midnight],
        [f for f in fixes if f.recorded_at >= midnight],
    ]
    joined = rules.join(rules.of(days[0]), rules.of(days[1]))
    raw = analyse(fixes, **RULES)
    assert raw.summary.trips == 1
    assert _figures(rules.summary(joined)) == _figures(raw.summary)
    assert _listed(rules, joined) == _segments(raw.trips, raw.stops)
    assert raw.trips[0].start_time < midnight < raw.trips[0].end_time
    # Each day alone sees half a trip: the join is not a sum of the days' figures.
    assert rules.summary(rules.of(days[0])).trips + rules.summary(rules.of(days[1])).trips == 2


def test_a_stop_of_exactly_the_minimum_cut_in_two():
    rules = Rules(**RULES)
    fixes, t = [], T0
    for speed, seconds in [
        (40.0, 0),
        (40.0, 30),
        (0.0, 30),
        (0.0, 90),
        (0.0, 60),
        (40.0, 30),
        (40.0, 30),
    ]:
        t += timedelta(seconds=seconds)
        fixes.append(Fix(t, 10.0 + len(fixes) * 0.003 * (speed > 0), 106.0, speed, True))
    raw = analyse(fixes, **RULES)
    assert [s.duration_s for s in raw.stops] == [180.0]
    for cut in range(1, len(fixes)):
        joined = rules.join(rules.of(fixes[:cut]), rules.of(fixes[cut:]))
        assert _figures(rules.summary(joined)) == _figures(raw.summary), cut
        assert _listed(rules, joined) == _segments(raw.trips, raw.stops), cut
