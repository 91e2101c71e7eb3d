"""Vehicle requests and responses."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_vehicle.models import VehicleStatus, VehicleType
from fleet_vehicle.validation import Name, Notes, Plate, ShortText, Tag, Vin

SpeedLimit = Annotated[float, Field(gt=0, le=400, description="km/h; overspeed above it")]
Year = Annotated[int, Field(ge=1900, le=2100)]
Odometer = Annotated[
    float,
    Field(ge=0, le=10_000_000, description="km; setting it resets the counted odometer to it"),
]
EngineHours = Annotated[
    float,
    Field(ge=0, le=1_000_000, description="h; setting it resets the counted engine hours to it"),
]
Tags = Annotated[list[Tag], Field(max_length=20)]


class VehicleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    plate: Plate
    vin: Vin | None = None
    make: ShortText | None = None
    model: ShortText | None = None
    year: Year | None = None
    type: VehicleType = VehicleType.car
    status: VehicleStatus = VehicleStatus.active
    speed_limit_kph: SpeedLimit | None = None
    group: ShortText | None = None
    tags: Tags = []
    notes: Notes | None = None
    odometer_km: Odometer = 0.0
    engine_hours: EngineHours = 0.0


_REQUIRED = ("name", "plate", "type", "status", "tags", "odometer_km", "engine_hours")


class VehicleUpdate(BaseModel):
    """Only the fields sent change; `null` clears an optional field."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    plate: Plate | None = None
    vin: Vin | None = None
    make: ShortText | None = None
    model: ShortText | None = None
    year: Year | None = None
    type: VehicleType | None = None
    status: VehicleStatus | None = None
    speed_limit_kph: SpeedLimit | None = None
    group: ShortText | None = None
    tags: Tags | None = None
    notes: Notes | None = None
    odometer_km: Odometer | None = None
    engine_hours: EngineHours | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> "VehicleUpdate":
        for field in _REQUIRED:
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class VehicleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    plate: str
    vin: str | None
    make: str | None
    model: str | None
    year: int | None
    type: VehicleType
    status: VehicleStatus
    speed_limit_kph: float | None
    group: str | None
    tags: list[str]
    notes: str | None
    odometer_km: float
    engine_hours: float
    current_driver_id: uuid.UUID | None = None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = Field(
        description="Set when the vehicle was deleted; its history stays readable"
    )


class DriverAssignmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    driver_id: uuid.UUID | None = Field(description="The driver to put in the vehicle, or null")


class DriverAssignmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    vehicle_id: uuid.UUID
    driver_id: uuid.UUID
    started_at: datetime
    ended_at: datetime | None
    assigned_by: uuid.UUID | None


class DeviceAssignmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    vehicle_id: uuid.UUID
    device_id: uuid.UUID
    started_at: datetime
    ended_at: datetime | None
    assigned_by: uuid.UUID | None
