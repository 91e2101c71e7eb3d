"""Driver requests and responses."""

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fleet_vehicle.validation import Name, Notes

Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()\-]{3,31}$"),
    Field(description="Digits, spaces, dashes and brackets, optionally a leading +"),
]
LicenceNumber = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-/.]{0,39}$"
    ),
]
LicenceExpiry = Annotated[date, Field(ge=date(1900, 1, 1), le=date(2200, 12, 31))]


class DriverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    phone: Phone | None = None
    licence_number: LicenceNumber
    licence_expiry: LicenceExpiry | None = None
    notes: Notes | None = None


class DriverUpdate(BaseModel):
    """Only the fields sent change; `null` clears an optional field."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    phone: Phone | None = None
    licence_number: LicenceNumber | None = None
    licence_expiry: LicenceExpiry | None = None
    notes: Notes | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> "DriverUpdate":
        for field in ("name", "licence_number"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class DriverOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    phone: str | None
    licence_number: str
    licence_expiry: date | None
    notes: str | None
    current_vehicle_id: uuid.UUID | None = None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
