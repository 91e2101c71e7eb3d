"""Geofence input and output: a GeoJSON Polygon or a circle, validated with a clear reason."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from shapely import Polygon
from shapely.validation import explain_validity

MAX_VERTICES = 1000
MAX_RINGS = 50
MAX_RADIUS_M = 500_000.0

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
SpeedLimit = Annotated[float, Field(gt=0, le=400)]
Coordinate = Annotated[list[float], Field(min_length=2, max_length=3)]


def _check_lon_lat(lon: float, lat: float, where: str) -> None:
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{where}: longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{where}: latitude {lat} is outside [-90, 90]")


class PolygonGeometry(BaseModel):
    """A GeoJSON Polygon: an outer ring and optional holes, each closed, [lon, lat] pairs."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    type: Literal["Polygon"]
    coordinates: Annotated[
        list[Annotated[list[Coordinate], Field(max_length=2 * MAX_VERTICES)]],
        Field(min_length=1, max_length=MAX_RINGS),
    ]

    @field_validator("coordinates")
    @classmethod
    def _valid_polygon(cls, rings: list[list[list[float]]]) -> list[list[list[float]]]:
        vertices = sum(len(ring) - 1 for ring in rings)
        if vertices > MAX_VERTICES:
            raise ValueError(f"polygon has {vertices} vertices; at most {MAX_VERTICES} allowed")
        cleaned: list[list[list[float]]] = []
        for r, ring in enumerate(rings):
            name = "outer ring" if r == 0 else f"hole {r}"
            if len(ring) < 4:
                raise ValueError(f"{name} needs at least 4 positions (3 corners and closing)")
            if ring[0][:2] != ring[-1][:2]:
                raise ValueError(f"{name} is not closed: its first and last positions differ")
            for i, position in enumerate(ring):
                _check_lon_lat(position[0], position[1], f"{name}, position {i}")
            cleaned.append([[p[0], p[1]] for p in ring])
        shape = Polygon(cleaned[0], cleaned[1:])
        if not shape.is_valid:
            raise ValueError(f"polygon is invalid: {explain_validity(shape)}")
        if shape.area == 0:
            raise ValueError("polygon has no area")
        return cleaned


class CircleGeometry(BaseModel):
    """`{"type": "Circle", "center": [lon, lat], "radius_m": r}`."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    type: Literal["Circle"]
    center: Annotated[list[float], Field(min_length=2, max_length=2)]
    radius_m: float

    @field_validator("center")
    @classmethod
    def _valid_center(cls, center: list[float]) -> list[float]:
        _check_lon_lat(center[0], center[1], "center")
        return center

    @field_validator("radius_m")
    @classmethod
    def _valid_radius(cls, radius_m: float) -> float:
        if radius_m <= 0:
            raise ValueError("radius_m must be greater than 0")
        if radius_m > MAX_RADIUS_M:
            raise ValueError(f"radius_m must be at most {MAX_RADIUS_M:.0f}")
        return radius_m


Geometry = Annotated[PolygonGeometry | CircleGeometry, Field(discriminator="type")]


class GeofenceCreate(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    name: Name
    colour: Colour = "#3388ff"
    geometry: Geometry
    speed_limit_kph: SpeedLimit | None = None
    active: bool = True


class GeofenceUpdate(BaseModel):
    """Partial update; `speed_limit_kph: null` removes the limit."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    name: Name | None = None
    colour: Colour | None = None
    geometry: Geometry | None = None
    speed_limit_kph: SpeedLimit | None = None
    active: bool | None = None


class GeofenceOut(BaseModel):
    id: UUID
    name: str
    colour: str
    geometry: dict[str, Any]
    speed_limit_kph: float | None
    active: bool
    created_at: datetime
    updated_at: datetime


class GeofenceList(BaseModel):
    items: list[GeofenceOut]
    total: int
    limit: int
    offset: int
