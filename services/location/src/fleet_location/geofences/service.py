"""Geofence CRUD, always scoped by org, and the change notice that rebuilds replicas' indexes."""

from typing import Any
from uuid import UUID

from geoalchemy2.shape import to_shape
from redis.asyncio import Redis
from shapely import Point, Polygon
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.errors import NotFoundError
from fleet_location.geofences.models import Geofence
from fleet_location.geofences.schemas import (
    CircleGeometry,
    GeofenceCreate,
    GeofenceOut,
    GeofenceUpdate,
    PolygonGeometry,
)

# Location-internal: every replica listens and drops the org's in-memory index.
GEOFENCES_CHANGED_CHANNEL = "fleet:geofences:changed"
CIRCLE_QUAD_SEGMENTS = 16


def _apply_geometry(geofence: Geofence, geometry: PolygonGeometry | CircleGeometry) -> None:
    if isinstance(geometry, CircleGeometry):
        lon, lat = geometry.center
        point = func.ST_GeogFromText(f"SRID=4326;{Point(lon, lat).wkt}")
        geofence.kind = "circle"
        geofence.center = point
        geofence.radius_m = geometry.radius_m
        geofence.area = func.ST_Buffer(
            point, geometry.radius_m, f"quad_segs={CIRCLE_QUAD_SEGMENTS}"
        )
    else:
        rings = geometry.coordinates
        geofence.kind = "polygon"
        geofence.center = None
        geofence.radius_m = None
        geofence.area = func.ST_GeogFromText(f"SRID=4326;{Polygon(rings[0], rings[1:]).wkt}")


def geometry_json(geofence: Geofence) -> dict[str, Any]:
    if geofence.kind == "circle" and geofence.center is not None:
        center = to_shape(geofence.center)
        return {"type": "Circle", "center": [center.x, center.y], "radius_m": geofence.radius_m}
    polygon = to_shape(geofence.area)
    rings = [polygon.exterior, *polygon.interiors]
    return {"type": "Polygon", "coordinates": [[list(c) for c in ring.coords] for ring in rings]}


def to_out(geofence: Geofence) -> GeofenceOut:
    return GeofenceOut(
        id=geofence.id,
        name=geofence.name,
        colour=geofence.colour,
        geometry=geometry_json(geofence),
        speed_limit_kph=geofence.speed_limit_kph,
        active=geofence.active,
        created_at=geofence.created_at,
        updated_at=geofence.updated_at,
    )


async def create_geofence(session: AsyncSession, org_id: UUID, data: GeofenceCreate) -> Geofence:
    geofence = Geofence(
        org_id=org_id,
        name=data.name,
        colour=data.colour,
        speed_limit_kph=data.speed_limit_kph,
        active=data.active,
    )
    _apply_geometry(geofence, data.geometry)
    session.add(geofence)
    await session.commit()
    await session.refresh(geofence)
    return geofence


async def list_geofences(
    session: AsyncSession, org_id: UUID, *, active: bool | None, limit: int, offset: int
) -> tuple[list[Geofence], int]:
    query = select(Geofence).where(Geofence.org_id == org_id)
    if active is not None:
        query = query.where(Geofence.active == active)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(Geofence.name, Geofence.id).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def get_geofence(session: AsyncSession, org_id: UUID, geofence_id: UUID) -> Geofence:
    geofence = await session.scalar(
        select(Geofence).where(Geofence.id == geofence_id, Geofence.org_id == org_id)
    )
    if geofence is None:
        raise NotFoundError("geofence not found")
    return geofence


async def update_geofence(
    session: AsyncSession, org_id: UUID, geofence_id: UUID, data: GeofenceUpdate
) -> Geofence:
    geofence = await get_geofence(session, org_id, geofence_id)
    fields = data.model_fields_set
    if "name" in fields and data.name is not None:
        geofence.name = data.name
    if "colour" in fields and data.colour is not None:
        geofence.colour = data.colour
    if "active" in fields and data.active is not None:
        geofence.active = data.active
    if "speed_limit_kph" in fields:
        geofence.speed_limit_kph = data.speed_limit_kph
    if "geometry" in fields and data.geometry is not None:
        _apply_geometry(geofence, data.geometry)
    geofence.updated_at = func.now()
    await session.commit()
    await session.refresh(geofence)
    return geofence


async def delete_geofence(session: AsyncSession, org_id: UUID, geofence_id: UUID) -> None:
    geofence = await get_geofence(session, org_id, geofence_id)
    await session.delete(geofence)
    await session.commit()


async def active_geofences(session: AsyncSession, org_id: UUID) -> list[Geofence]:
    rows = await session.scalars(
        select(Geofence).where(Geofence.org_id == org_id, Geofence.active.is_(True))
    )
    return list(rows)


async def publish_geofences_changed(redis: Redis, org_id: UUID) -> None:
    await redis.publish(GEOFENCES_CHANGED_CHANNEL, str(org_id))
