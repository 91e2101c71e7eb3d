"""Device requests and responses."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_vehicle.models import DeviceProtocol
from fleet_vehicle.validation import DeviceUid, Name, Notes, ShortText


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uid: DeviceUid
    name: Name
    model: ShortText | None = None
    protocol: DeviceProtocol = DeviceProtocol.mqtt
    vehicle_id: uuid.UUID | None = Field(None, description="The vehicle the device is fitted to")
    active: bool = True
    notes: Notes | None = None


class DeviceUpdate(BaseModel):
    """Only the fields sent change. The uid cannot change (it is the broker username and the
    topic): register a new device instead."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    model: ShortText | None = None
    protocol: DeviceProtocol | None = None
    vehicle_id: uuid.UUID | None = None
    active: bool | None = Field(
        None, description="false disables the broker client and disconnects the device"
    )
    http_key_required: bool | None = Field(
        None,
        description="false (admins only) lets the device send HTTP (OsmAnd) positions "
        "without its key: for legacy hardware that cannot add `&key=` to its URL. Recorded "
        "with who and when (`http_key_waived_by`, `http_key_waived_at`).",
    )
    notes: Notes | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> "DeviceUpdate":
        for field in ("name", "protocol", "active", "http_key_required"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class BrokerCredentials(BaseModel):
    username: str
    password: str = Field(description="Shown once; only the broker keeps a (salted) hash")
    mqtt_host: str
    mqtt_port: int
    http_key: str = Field(
        description="Shown once; only its hash is kept. HTTP (OsmAnd / Traccar Client) "
        "positions carry it as the `key` query parameter: `/ingest/osmand?key=…&id=…`"
    )


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    org_id: uuid.UUID
    uid: str
    name: str
    model: str | None
    protocol: DeviceProtocol
    vehicle_id: uuid.UUID | None
    active: bool
    credentials_reset_required: bool = Field(
        description="The broker lost this device's client and it was re-created with a new "
        "password: rotate the credentials and re-provision the device"
    )
    credentials_rotated_at: datetime | None
    http_key_required: bool = Field(
        description="HTTP (OsmAnd) positions must carry the device's key; false: opted out"
    )
    http_key_waived_at: datetime | None = Field(
        description="When the key requirement was waived (set while it is)"
    )
    http_key_waived_by: uuid.UUID | None = Field(
        description="The admin who waived it (none: registered before keys existed)"
    )
    notes: str | None
    last_seen_at: datetime | None = Field(None, description="Time of the newest position")
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


class DeviceWithCredentials(DeviceOut):
    credentials: BrokerCredentials | None = Field(
        description="null for a TCP tracker (`teltonika`, `gt06`), which has no broker client"
    )
