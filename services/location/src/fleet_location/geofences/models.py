"""The geofences table. The area is a PostGIS geography; circles also keep centre and radius."""

import uuid
from datetime import datetime

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import Boolean, CheckConstraint, DateTime, Float, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from fleet_location.database import Base


class Geofence(Base):
    __tablename__ = "geofences"
    __table_args__ = (
        Index("ix_geofences_org_id_name", "org_id", "name"),
        Index("ix_geofences_area", "area", postgresql_using="gist"),
        CheckConstraint("kind IN ('polygon', 'circle')", name="kind"),
        CheckConstraint(
            "(kind = 'circle') = (center IS NOT NULL AND radius_m IS NOT NULL)",
            name="circle_fields",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    colour: Mapped[str] = mapped_column(String(7))
    kind: Mapped[str] = mapped_column(String(16))  # "polygon" | "circle"
    # Circles are stored as their buffered polygon too, so spatial SQL treats both alike.
    area: Mapped[WKBElement] = mapped_column(Geography("POLYGON", srid=4326, spatial_index=False))
    center: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    radius_m: Mapped[float | None] = mapped_column(Float)
    speed_limit_kph: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
