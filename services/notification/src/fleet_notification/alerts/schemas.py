"""Alert output."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

AlertStatus = Literal["open", "acknowledged", "resolved"]


class DeliveryOut(BaseModel):
    channel: str
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class AlertOut(BaseModel):
    id: UUID
    rule_id: UUID | None
    rule_name: str
    event_id: UUID
    type: str
    severity: str
    status: str
    vehicle_id: UUID | None
    vehicle_group: str | None
    device_id: UUID | None
    position: dict[str, Any] | None
    details: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: UUID | None
    resolved_at: datetime | None
    resolved_by: UUID | None
    deliveries: list[DeliveryOut] | None = None


class AlertList(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int
