"""The in-memory shape of one accepted position, shared by ingest, storage and detection."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID


@dataclass(slots=True)
class Position:
    device_id: UUID
    vehicle_id: UUID | None
    org_id: UUID
    recorded_at: datetime  # timezone-aware, UTC
    lat: float
    lon: float
    speed_kph: float | None = None
    heading_deg: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    battery_pct: float | None = None
    ignition: bool | None = None
    odometer_km: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


class PositionObserver(Protocol):
    """Told about positions once they are committed, and about device status changes.

    Event detection (geofences, overspeed, idle, battery, online/offline) implements this;
    the ingest pipeline calls it after each committed batch, in time order per device. A
    position can come again (a message redelivered after a crash): judge each once.
    """

    async def positions_committed(self, positions: list[Position]) -> None: ...

    async def device_status(
        self,
        *,
        device_id: UUID,
        vehicle_id: UUID | None,
        org_id: UUID,
        online: bool,
        at: datetime,
    ) -> None: ...
