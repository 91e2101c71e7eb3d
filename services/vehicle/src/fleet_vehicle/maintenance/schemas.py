"""Maintenance schedule requests and responses."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_vehicle.models import MaintenanceMeter
from fleet_vehicle.validation import Name

# Longest sane interval per meter: a million km, a hundred thousand engine hours.
MAX_INTERVAL = {MaintenanceMeter.odometer_km: 1_000_000.0, MaintenanceMeter.engine_hours: 100_000.0}
Interval = Annotated[
    float, Field(gt=0, le=1_000_000, description="In the meter's unit (km or h), > 0")
]
Reading = Annotated[
    float, Field(ge=0, le=10_000_000, description="A meter value in its unit (km or h)")
]


def _check_interval(meter: MaintenanceMeter, interval: float | None) -> None:
    if interval is not None and interval > MAX_INTERVAL[meter]:
        raise ValueError(f"interval: at most {MAX_INTERVAL[meter]:g} for {meter}")


class MaintenanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="What is done, e.g. `Oil change`")
    meter: MaintenanceMeter
    interval: Interval
    next_due: Reading | None = Field(
        default=None,
        description="The meter value it is first due at; default: the current one + interval",
    )

    @model_validator(mode="after")
    def _interval_fits_the_meter(self) -> "MaintenanceCreate":
        _check_interval(self.meter, self.interval)
        return self


class MaintenanceUpdate(BaseModel):
    """Only the fields sent change; the meter of a schedule is fixed."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    interval: Interval | None = None
    next_due: Reading | None = None

    @model_validator(mode="after")
    def _not_null(self) -> "MaintenanceUpdate":
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class MaintenanceServiced(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reading: Reading | None = Field(
        default=None,
        description="The meter at the service; default: the vehicle's current meter",
    )


class MaintenanceOut(BaseModel):
    id: uuid.UUID
    vehicle_id: uuid.UUID
    name: str
    meter: MaintenanceMeter
    interval: float
    next_due: float
    current_reading: float = Field(
        description="The vehicle's meter now, as the location service counts it"
    )
    due: bool = Field(description="The meter has reached `next_due`")
    last_serviced_at: datetime | None
    last_serviced_reading: float | None
    last_serviced_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
