"""Tables of the vehicle service: vehicles, drivers, devices and their assignment history.

Vehicles, drivers and devices are archived (`archived_at`), never deleted, so that the
history of who drove what and which device sat in which vehicle stays readable.
"""

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from fleet_vehicle.database import Base


class VehicleType(StrEnum):
    car = "car"
    van = "van"
    truck = "truck"
    bus = "bus"
    motorcycle = "motorcycle"
    other = "other"


class VehicleStatus(StrEnum):
    active = "active"
    inactive = "inactive"
    maintenance = "maintenance"
    retired = "retired"


class DeviceProtocol(StrEnum):
    mqtt = "mqtt"
    owntracks = "owntracks"
    osmand = "osmand"
    # Hardware trackers on the location service's TCP listeners: the IMEI is their identity,
    # they have no broker client (see docs/trackers.md).
    teltonika = "teltonika"
    gt06 = "gt06"


TCP_PROTOCOLS = frozenset((DeviceProtocol.teltonika, DeviceProtocol.gt06))


def uses_broker(protocol: str) -> bool:
    """Whether devices of this protocol get (and need) a client on the MQTT broker."""
    return protocol not in TCP_PROTOCOLS


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _updated_at() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Vehicle(Base):
    __tablename__ = "vehicles"
    __table_args__ = (
        # A plate is unique among the org's vehicles in service; an archived vehicle frees it.
        Index(
            "uq_vehicles_org_id_plate",
            "org_id",
            text("lower(plate)"),
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_vehicles_org_id_name", "org_id", "name"),
        CheckConstraint("speed_limit_kph IS NULL OR speed_limit_kph > 0", name="speed_limit"),
        CheckConstraint("odometer_km >= 0", name="odometer"),
        CheckConstraint("engine_hours >= 0", name="engine_hours"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    plate: Mapped[str] = mapped_column(String(20), nullable=False)
    vin: Mapped[str | None] = mapped_column(String(17))
    make: Mapped[str | None] = mapped_column(String(60))
    model: Mapped[str | None] = mapped_column(String(60))
    year: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20), nullable=False, default=VehicleType.car)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default=VehicleStatus.active)
    speed_limit_kph: Mapped[float | None] = mapped_column(Double)
    group: Mapped[str | None] = mapped_column("group_name", String(60))
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), nullable=False, server_default="{}", default=list
    )
    notes: Mapped[str | None] = mapped_column(Text)
    # The meters as last entered; setting one resets the location service's running count to
    # it (a device that reports its own odometer overrides `odometer_km`).
    odometer_km: Mapped[float] = mapped_column(Double, nullable=False, default=0.0)
    engine_hours: Mapped[float] = mapped_column(
        Double, nullable=False, default=0.0, server_default="0"
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Driver(Base):
    __tablename__ = "drivers"
    __table_args__ = (
        Index(
            "uq_drivers_org_id_licence_number",
            "org_id",
            text("lower(licence_number)"),
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_drivers_org_id_name", "org_id", "name"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    phone: Mapped[str | None] = mapped_column(String(32))
    licence_number: Mapped[str] = mapped_column(String(40), nullable=False)
    licence_expiry: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        # The uid is the broker username and a topic segment: unique across all orgs.
        Index(
            "uq_devices_uid",
            "uid",
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
        Index("ix_devices_org_id_name", "org_id", "name"),
        Index("ix_devices_vehicle_id", "vehicle_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    uid: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    model: Mapped[str | None] = mapped_column(String(60))
    protocol: Mapped[str] = mapped_column(String(20), nullable=False, default=DeviceProtocol.mqtt)
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("vehicles.id")
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Set when reconcile had to re-create the device's broker client with a new password that
    # nobody has seen: the admin must rotate the credentials and re-provision the device.
    credentials_reset_required: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default="false"
    )
    credentials_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # SHA-256 of the key HTTP (OsmAnd) positions must carry; the key itself is shown once.
    http_key_hash: Mapped[str | None] = mapped_column(String(64))
    # False only by an admin's explicit opt-out (legacy hardware that cannot send a key),
    # recorded with who and when; devices registered before keys existed start opted out.
    http_key_required: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default="true"
    )
    http_key_waived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    http_key_waived_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DriverAssignment(Base):
    """A driver at the wheel of a vehicle from `started_at` until `ended_at` (open: now)."""

    __tablename__ = "driver_assignments"
    __table_args__ = (
        Index(
            "uq_driver_assignments_open_vehicle",
            "vehicle_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "uq_driver_assignments_open_driver",
            "driver_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_driver_assignments_org_id_started_at", "org_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    vehicle_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("vehicles.id"), nullable=False
    )
    driver_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("drivers.id"), nullable=False
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class DeviceAssignment(Base):
    """A device fitted to a vehicle from `started_at` until `ended_at` (open: now)."""

    __tablename__ = "device_assignments"
    __table_args__ = (
        Index(
            "uq_device_assignments_open_device",
            "device_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_device_assignments_vehicle_id", "vehicle_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    device_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("devices.id"), nullable=False
    )
    vehicle_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("vehicles.id"), nullable=False
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class CommandType(StrEnum):
    custom = "custom"
    set_interval = "set_interval"
    engine_stop = "engine_stop"
    engine_resume = "engine_resume"
    reboot = "reboot"
    request_position = "request_position"


class CommandStatus(StrEnum):
    queued = "queued"  # accepted, not yet handed to the broker
    sent = "sent"  # the broker took it (QoS 1); resent each time the device comes online
    delivered = "delivered"  # the device says it has it
    acknowledged = "acknowledged"  # the device says it did it
    failed = "failed"  # the device says it could not
    expired = "expired"  # no final answer before `expires_at`


# Statuses a command can still leave; the rest are final.
OPEN_COMMAND_STATUSES = (CommandStatus.queued, CommandStatus.sent, CommandStatus.delivered)


class DeviceCommand(Base):
    """A downlink command to a device, who sent it and how far it got (also an audit trail:
    rows are never deleted with their device)."""

    __tablename__ = "device_commands"
    __table_args__ = (
        Index("ix_device_commands_device_id_created_at", "device_id", "created_at"),
        # The expiry sweep and the resend on reconnection look only at open commands.
        Index(
            "ix_device_commands_open_expires_at",
            "expires_at",
            postgresql_where=text("status IN ('queued', 'sent', 'delivered')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    device_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("devices.id"), nullable=False
    )
    uid: Mapped[str] = mapped_column(String(64), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=CommandStatus.queued)
    message: Mapped[str | None] = mapped_column(String(500))
    force: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    send_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MaintenanceMeter(StrEnum):
    odometer_km = "odometer_km"
    engine_hours = "engine_hours"


class MaintenanceSchedule(Base):
    """A recurring service of a vehicle (oil change every 10,000 km, a check every 500 h):
    due when the vehicle's meter reaches `next_due`; servicing it moves `next_due` to the
    meter then plus `interval`."""

    __tablename__ = "maintenance_schedules"
    __table_args__ = (
        Index("ix_maintenance_schedules_vehicle_id", "vehicle_id"),
        CheckConstraint("interval > 0", name="interval"),
        CheckConstraint("next_due >= 0", name="next_due"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    vehicle_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("vehicles.id"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    meter: Mapped[str] = mapped_column(String(16), nullable=False)
    interval: Mapped[float] = mapped_column(Double, nullable=False)  # in the meter's unit
    next_due: Mapped[float] = mapped_column(Double, nullable=False)
    last_serviced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_serviced_reading: Mapped[float | None] = mapped_column(Double)
    last_serviced_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
