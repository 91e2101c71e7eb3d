"""The dead-letter store: rejected telemetry with its raw payload, capped by row count."""

from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Identity, Index, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from fleet_location.database import Base


class TelemetryRejection(Base):
    __tablename__ = "telemetry_rejections"
    __table_args__ = (Index("ix_telemetry_rejections_org_id_id", "org_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    source: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    device_uid: Mapped[str | None] = mapped_column(Text)
    org_id: Mapped[UUID | None]
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
