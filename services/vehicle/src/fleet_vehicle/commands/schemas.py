"""Downlink command input and output."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_vehicle.models import CommandStatus, CommandType

MAX_EXPIRY_S = 7 * 86_400


class SetIntervalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_s: Annotated[float, Field(ge=1, le=86_400)]


class CustomParams(BaseModel):
    """A raw payload the device's firmware understands (a Traccar-style custom command)."""

    model_config = ConfigDict(extra="forbid")

    payload: Annotated[str, Field(min_length=1, max_length=1000)]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


PARAMS_BY_TYPE: dict[str, type[BaseModel]] = {
    CommandType.set_interval: SetIntervalParams,
    CommandType.custom: CustomParams,
}


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: CommandType
    params: dict[str, Any] = {}
    # engine_stop is refused while the vehicle is not known to stand still, unless forced.
    force: bool = False
    expires_in_s: Annotated[
        int, Field(ge=1, le=MAX_EXPIRY_S, description="Given up (expired) after this long")
    ] = 3600

    @model_validator(mode="after")
    def _params_fit_the_type(self) -> "CommandCreate":
        model = PARAMS_BY_TYPE.get(self.type, NoParams)
        self.params = model.model_validate(self.params).model_dump()
        return self


class CommandOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    device_id: uuid.UUID
    type: CommandType
    params: dict[str, Any]
    status: CommandStatus
    message: str | None
    force: bool
    created_by: uuid.UUID
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    send_count: int
    delivered_at: datetime | None
    completed_at: datetime | None


class CommandResultIn(BaseModel):
    """A device's answer, as it publishes it on `fleet/{uid}/commands/result` (or the location
    service reports a tracker's on the tracker command results stream)."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    status: Literal["delivered", "acknowledged", "failed"]
    message: Annotated[str, Field(max_length=500)] | None = None
