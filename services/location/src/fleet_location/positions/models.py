"""The telemetry table: one row per accepted position, partitioned by day on `recorded_at`.

Partitions are created ahead and dropped after retention by `ingest.partitions`; the table
itself is created by migration 0002 (SQLAlchemy cannot express partition DDL in full).
"""

from datetime import datetime
from uuid import UUID

from geoalchemy2 import Geography
from sqlalchemy import Boolean, DateTime, Double, Index, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from fleet_location.database import Base


class Telemetry(Base):
    __tablename__ = "telemetry"
    __table_args__ = (
        Index("ix_telemetry_org_vehicle_time", "org_id", "vehicle_id", "recorded_at"),
        {"postgresql_partition_by": "RANGE (recorded_at)"},
    )

    device_id: Mapped[UUID] = mapped_column(primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    org_id: Mapped[UUID]
    vehicle_id: Mapped[UUID | None]
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    geog = mapped_column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    speed_kph: Mapped[float | None] = mapped_column(Double)
    heading_deg: Mapped[float | None] = mapped_column(Double)
    altitude_m: Mapped[float | None] = mapped_column(Double)
    accuracy_m: Mapped[float | None] = mapped_column(Double)
    battery_pct: Mapped[float | None] = mapped_column(Double)
    ignition: Mapped[bool | None] = mapped_column(Boolean)
    odometer_km: Mapped[float | None] = mapped_column(Double)
    attrs: Mapped[dict | None] = mapped_column(JSONB)
