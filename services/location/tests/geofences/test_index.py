"""The vectorised containment check agrees with each geofence's own exact check."""

import math
import random
import uuid

import shapely

from fleet_location.geofences.index import IndexedGeofence, OrgGeofences


def _zones(rng: random.Random) -> list[IndexedGeofence]:
    zones = []
    for i in range(200):
        lat, lon = 10.78 + rng.uniform(-0.1, 0.1), 106.70 + rng.uniform(-0.1, 0.1)
        if i % 2:
            radius = rng.uniform(100, 800)
            # The envelope shape, as the index builds it: a buffered point (in degrees).
            shape = shapely.Point(lon, lat).buffer(radius / 100_000)
            zones.append(IndexedGeofence(uuid.uuid4(), f"c{i}", None, shape, lat, lon, radius))
        else:
            r, n = rng.uniform(0.002, 0.01), rng.randint(3, 12)
            ring = [
                (lon + r * math.cos(2 * math.pi * k / n), lat + r * math.sin(2 * math.pi * k / n))
                for k in range(n)
            ]
            zones.append(IndexedGeofence(uuid.uuid4(), f"p{i}", 30.0, shapely.Polygon(ring)))
    return zones


def test_containing_many_matches_the_exact_check_point_by_point() -> None:
    rng = random.Random(11)
    index = OrgGeofences(_zones(rng))
    lats = [10.78 + rng.uniform(-0.11, 0.11) for _ in range(5000)]
    lons = [106.70 + rng.uniform(-0.11, 0.11) for _ in range(5000)]
    found = index.containing_many(lats, lons)
    hits = 0
    for lat, lon, zones in zip(lats, lons, found, strict=True):
        expected = {g.id for g in index.geofences if g.contains(lat, lon)}
        assert {g.id for g in zones} == expected
        hits += len(zones)
    assert hits > 100  # the points really fall into zones, circles and polygons alike


def test_no_geofences_and_no_points() -> None:
    assert OrgGeofences([]).containing_many([1.0], [2.0]) == [[]]
    index = OrgGeofences(_zones(random.Random(3)))
    assert index.containing_many([], []) == []
    assert len(index.id_strings) == 200
