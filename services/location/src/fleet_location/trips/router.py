"""Trips, stops and the summary report."""

import csv
import io
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from fleet_common.auth import CurrentUser
from fleet_location.config import Settings
from fleet_location.positions.router import From, To, require_vehicle, time_range
from fleet_location.trips.detection import Stop, Trip
from fleet_location.trips.rollups import range_rollups, rollup_rules

router = APIRouter(tags=["trips"])


class PlaceOut(BaseModel):
    lat: float
    lon: float


class TripOut(BaseModel):
    start_time: datetime
    end_time: datetime
    start: PlaceOut
    end: PlaceOut
    distance_m: float
    duration_s: float
    max_speed_kph: float
    avg_speed_kph: float


class StopOut(BaseModel):
    start_time: datetime
    end_time: datetime
    place: PlaceOut
    duration_s: float
    ignition_on: bool


class TripsPage(BaseModel):
    vehicle_id: UUID
    items: list[TripOut]


class StopsPage(BaseModel):
    vehicle_id: UUID
    items: list[StopOut]


class VehicleSummary(BaseModel):
    vehicle_id: UUID
    distance_m: float
    driving_s: float
    idle_s: float
    max_speed_kph: float
    avg_speed_kph: float
    trips: int
    positions: int


class SummaryReport(BaseModel):
    start: datetime
    end: datetime
    items: list[VehicleSummary]


async def _segments(
    request: Request, org_id: UUID, vehicle_id: UUID, start, end
) -> list[Trip | Stop]:
    """A vehicle's trips and stops over up to `max_report_days`: joined from its rollups (the
    days' and hours' settled trips and stops, and what the joins between them settle), raw rows
    only for the range's open edges and for hours not rolled up yet — what `analyse` gives on
    the raw rows of the whole range."""
    settings: Settings = request.app.state.settings
    start, end = time_range(settings, start, end, max_days=settings.max_report_days)
    await require_vehicle(request, org_id, vehicle_id)
    rules = rollup_rules(settings)
    async with request.app.state.read_pool.acquire() as conn, conn.transaction(readonly=True):
        rollups = await range_rollups(conn, rules, org_id, start, end, vehicle_id, segments=True)
    return rules.segments(rollups.get(vehicle_id))


@router.get("/vehicles/{vehicle_id}/trips", response_model=TripsPage)
async def trips(
    request: Request, principal: CurrentUser, vehicle_id: UUID, start: From = None, end: To = None
) -> TripsPage:
    """A vehicle's trips (between stops), ranges up to a year, from its rollups."""
    segments = await _segments(request, principal.org_id, vehicle_id, start, end)
    return TripsPage(
        vehicle_id=vehicle_id,
        items=[
            TripOut.model_validate(s, from_attributes=True) for s in segments if isinstance(s, Trip)
        ],
    )


@router.get("/vehicles/{vehicle_id}/stops", response_model=StopsPage)
async def stops(
    request: Request, principal: CurrentUser, vehicle_id: UUID, start: From = None, end: To = None
) -> StopsPage:
    """A vehicle's stops (standing at least `min_stop_duration_s`), ranges up to a year."""
    segments = await _segments(request, principal.org_id, vehicle_id, start, end)
    return StopsPage(
        vehicle_id=vehicle_id,
        items=[
            StopOut.model_validate(s, from_attributes=True) for s in segments if isinstance(s, Stop)
        ],
    )


SUMMARY_FIELDS = (
    "vehicle_id",
    "distance_m",
    "driving_s",
    "idle_s",
    "max_speed_kph",
    "avg_speed_kph",
    "trips",
    "positions",
)


@router.get("/reports/summary", response_model=SummaryReport)
async def summary(
    request: Request,
    principal: CurrentUser,
    start: From = None,
    end: To = None,
    format: Literal["json", "csv"] = "json",
    vehicle_id: Annotated[UUID | None, Query()] = None,
):
    """Per vehicle: distance, driving time, idle time, max and average speed.

    From the hourly and daily rollups, raw rows only where the range has no closed, up-to-date
    bucket (its open edges, the current hour, late data not yet rolled up): up to a year.
    """
    settings: Settings = request.app.state.settings
    start, end = time_range(settings, start, end, max_days=settings.max_report_days)
    rules = rollup_rules(settings)
    async with request.app.state.read_pool.acquire() as conn, conn.transaction(readonly=True):
        rollups = await range_rollups(conn, rules, principal.org_id, start, end, vehicle_id)
    items = []
    for vehicle, rollup in sorted(rollups.items(), key=lambda item: str(item[0])):
        figures = rules.summary(rollup)
        items.append(
            VehicleSummary(
                vehicle_id=vehicle, **{f: getattr(figures, f) for f in SUMMARY_FIELDS[1:]}
            )
        )
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(SUMMARY_FIELDS)
        for item in items:
            writer.writerow([getattr(item, f) for f in SUMMARY_FIELDS])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="summary.csv"'},
        )
    return SummaryReport(start=start, end=end, items=items)
