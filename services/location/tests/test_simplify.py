"""Downsampling a route to a point count (Douglas-Peucker with a tolerance search)."""

import math

from fleet_location.positions.service import simplify_to_count


def test_a_winding_day_fits_the_count_and_keeps_its_ends() -> None:
    n = 86_400
    lons = [106 + g * 0.00001 + 0.01 * math.sin(g / 600.0) for g in range(n)]
    lats = [10 + 0.02 * math.sin(g / 1500.0) + 0.005 * math.cos(g / 97.0) for g in range(n)]
    kept = simplify_to_count(lons, lats, 1000)
    assert 950 <= len(kept) <= 1000
    assert kept[0] == 0
    assert kept[-1] == n - 1
    assert kept == sorted(set(kept))


def test_a_sharp_corner_is_kept_and_a_straight_line_collapses() -> None:
    # East for 500 points, then north for 500: the corner is the one point that matters.
    lons = [i * 0.001 for i in range(500)] + [0.499] * 500
    lats = [0.0] * 500 + [i * 0.001 for i in range(1, 501)]
    kept = simplify_to_count(lons, lats, 10)
    assert 499 in kept
    straight = simplify_to_count([i * 0.001 for i in range(1000)], [0.0] * 1000, 10)
    assert straight == [0, 999]


def test_short_ranges_are_returned_whole() -> None:
    assert simplify_to_count([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 10) == [0, 1, 2]
