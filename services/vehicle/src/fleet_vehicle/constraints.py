"""Unique-index violations turned into 409s that name the offending field."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_common.errors import ConflictError

UNIQUE_FIELDS = {
    "uq_vehicles_org_id_plate": ("plate", "a vehicle with this plate exists"),
    "uq_drivers_org_id_licence_number": (
        "licence_number",
        "a driver with this licence number exists",
    ),
    "uq_devices_uid": ("uid", "a device with this uid exists"),
    "uq_driver_assignments_open_vehicle": ("vehicle_id", "the vehicle was assigned meanwhile"),
    "uq_driver_assignments_open_driver": ("driver_id", "the driver was assigned meanwhile"),
    "uq_device_assignments_open_device": ("device_id", "the device was assigned meanwhile"),
}


def conflict_from(exc: IntegrityError) -> ConflictError | None:
    """The ConflictError for a known unique index, or None for any other integrity error."""
    message = str(exc.orig)
    for index, (field, detail) in UNIQUE_FIELDS.items():
        if index in message:
            return ConflictError(detail, field=field)
    return None


async def commit_or_conflict(session: AsyncSession) -> None:
    """Commit; a known unique-index violation becomes its 409, anything else propagates."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        conflict = conflict_from(exc)
        if conflict is None:
            raise
        raise conflict from exc
