"""Positions API: latest with status, nearby, and a vehicle's history in four formats."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID
from xml.sax.saxutils import escape

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from fleet_common.auth import CurrentUser
from fleet_common.errors import NotFoundError, UnprocessableError
from fleet_location.config import Settings
from fleet_location.positions import service
from fleet_location.positions.service import Status, utc
from fleet_location.trips.rollups import rollup_rules

router = APIRouter(tags=["positions"])


class LatestPosition(BaseModel):
    device_id: UUID
    vehicle_id: UUID | None
    org_id: UUID
    recorded_at: datetime
    lat: float
    lon: float
    speed_kph: float | None = None
    heading_deg: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    battery_pct: float | None = None
    ignition: bool | None = None
    odometer_km: float | None = None
    attrs: dict[str, Any] = {}
    status: Status


class NearbyPosition(LatestPosition):
    distance_m: float


class LatestPage(BaseModel):
    items: list[LatestPosition]


class NearbyPage(BaseModel):
    items: list[NearbyPosition]


@router.get("/positions/latest", response_model=LatestPage)
async def latest(
    request: Request,
    principal: CurrentUser,
    status: Status | None = None,
    vehicle_id: UUID | None = None,
) -> LatestPage:
    """The newest position of every device of the org, with moving / stopped / offline."""
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    items = []
    for document in await service.latest_positions(request.app.state.redis, principal.org_id):
        if vehicle_id is not None and document.get("vehicle_id") != str(vehicle_id):
            continue
        state = service.vehicle_status(document, now, settings)
        if status is None or state == status:
            items.append(LatestPosition(**document, status=state))
    items.sort(key=lambda p: (str(p.vehicle_id), str(p.device_id)))
    return LatestPage(items=items)


@router.get("/positions/nearby", response_model=NearbyPage)
async def nearby(
    request: Request,
    principal: CurrentUser,
    lat: Annotated[float, Query(ge=-85.05112878, le=85.05112878)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    radius_m: Annotated[float, Query(gt=0, le=1_000_000)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NearbyPage:
    """The org's latest positions within `radius_m` of a point, nearest first."""
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    found = await service.nearby_positions(
        request.app.state.redis, principal.org_id, lat=lat, lon=lon, radius_m=radius_m, limit=limit
    )
    return NearbyPage(
        items=[
            NearbyPosition(
                **doc, status=service.vehicle_status(doc, now, settings), distance_m=distance
            )
            for doc, distance in found
        ]
    )


def time_range(
    settings: Settings,
    start: datetime | None,
    end: datetime | None,
    *,
    max_days: int | None = None,
) -> tuple:
    """Validate `from`/`to` (default: the last 24 hours) against the longest allowed span:
    `max_history_days` where raw rows are returned, longer (`max_days`) where they are not."""
    max_days = max_days or settings.max_history_days
    end = utc(end) if end else datetime.now(UTC)
    start = utc(start) if start else end - timedelta(days=1)
    if start >= end:
        raise UnprocessableError("`from` must be before `to`", field="from")
    if end - start > timedelta(days=max_days):
        detail = f"the range may span at most {max_days} days"
        if max_days == settings.max_history_days:
            detail += (
                " where raw positions are returned; history with `max_points` (downsampled from"
                f" hourly rollups), trips, stops and the summary report take up to"
                f" {settings.max_report_days} days"
            )
        raise UnprocessableError(detail, field="to")
    return start, end


async def require_vehicle(request: Request, org_id: UUID, vehicle_id: UUID) -> None:
    known = await service.vehicle_known(
        request.app.state.read_pool, request.app.state.devices, org_id, vehicle_id
    )
    if not known:
        raise NotFoundError("vehicle not found")


From = Annotated[datetime | None, Query(alias="from")]
To = Annotated[datetime | None, Query(alias="to")]
Format = Literal["json", "geojson", "gpx", "csv"]
FIELDS = (
    "recorded_at",
    "lat",
    "lon",
    "speed_kph",
    "heading_deg",
    "altitude_m",
    "accuracy_m",
    "battery_pct",
    "ignition",
    "odometer_km",
)
CHUNK_ROWS = 500


def _point(row) -> dict[str, Any]:
    point = dict(zip(FIELDS, row, strict=True))
    point["recorded_at"] = point["recorded_at"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return point


async def _json(rows, head: dict[str, Any]) -> AsyncIterator[bytes]:
    yield orjson.dumps(head)[:-1] + b',"points":['
    buffer: list[bytes] = []
    first = True
    async for row in rows:
        encoded = orjson.dumps(_point(row))
        buffer.append(encoded if first else b"," + encoded)
        first = False
        if len(buffer) >= CHUNK_ROWS:
            yield b"".join(buffer)
            buffer.clear()
    buffer.append(b"]}")
    yield b"".join(buffer)


async def _geojson(rows, head: dict[str, Any]) -> AsyncIterator[bytes]:
    yield b'{"type":"FeatureCollection","properties":' + orjson.dumps(head) + b',"features":['
    buffer: list[bytes] = []
    first = True
    async for row in rows:
        point = _point(row)
        feature = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [point.pop("lon"), point.pop("lat")]},
            "properties": point,
        }
        encoded = orjson.dumps(feature)
        buffer.append(encoded if first else b"," + encoded)
        first = False
        if len(buffer) >= CHUNK_ROWS:
            yield b"".join(buffer)
            buffer.clear()
    buffer.append(b"]}")
    yield b"".join(buffer)


async def _gpx(rows, head: dict[str, Any]) -> AsyncIterator[bytes]:
    name = escape(f"vehicle {head['vehicle_id']}")
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="Fleet Tracker" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><name>{name}</name><trkseg>\n"
    ).encode()
    buffer: list[str] = []
    async for row in rows:
        point = _point(row)
        ele = f"<ele>{point['altitude_m']}</ele>" if point["altitude_m"] is not None else ""
        buffer.append(
            f'<trkpt lat="{point["lat"]}" lon="{point["lon"]}">{ele}'
            f"<time>{point['recorded_at']}</time></trkpt>\n"
        )
        if len(buffer) >= CHUNK_ROWS:
            yield "".join(buffer).encode()
            buffer.clear()
    buffer.append("</trkseg></trk></gpx>\n")
    yield "".join(buffer).encode()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _csv(rows, _head: dict[str, Any]) -> AsyncIterator[bytes]:
    yield (",".join(FIELDS) + "\r\n").encode()
    buffer: list[str] = []
    async for row in rows:
        point = _point(row)
        buffer.append(",".join(_csv_value(point[f]) for f in FIELDS) + "\r\n")
        if len(buffer) >= CHUNK_ROWS:
            yield "".join(buffer).encode()
            buffer.clear()
    yield "".join(buffer).encode()


RENDERERS = {
    "json": (_json, "application/json"),
    "geojson": (_geojson, "application/geo+json"),
    "gpx": (_gpx, "application/gpx+xml"),
    "csv": (_csv, "text/csv; charset=utf-8"),
}


async def _listed(rows: list[tuple]) -> AsyncIterator[tuple]:
    for row in rows:
        yield row


@router.get("/vehicles/{vehicle_id}/history")
async def history(
    request: Request,
    principal: CurrentUser,
    vehicle_id: UUID,
    start: From = None,
    end: To = None,
    max_points: Annotated[int | None, Query(ge=2, le=1_000_000)] = None,
    format: Format = "json",
) -> StreamingResponse:
    """A vehicle's positions in time order, streamed; `max_points` downsamples the route
    (Douglas-Peucker, so turns and corners survive, straight stretches thin out).

    Raw positions: ranges up to `max_history_days` (31). With `max_points`, up to
    `max_report_days` (366): past 31 days the route is downsampled from the hourly rollups,
    not from raw rows — each hour's first and last position (only `recorded_at`, `lat`,
    `lon`, `speed_kph` and `ignition`; the other fields null), then Douglas-Peucker down to
    `max_points`; the head says `"sampling": "hourly"`.
    """
    settings: Settings = request.app.state.settings
    if max_points is None:
        start, end = time_range(settings, start, end)
    else:
        start, end = time_range(settings, start, end, max_days=settings.max_report_days)
    await require_vehicle(request, principal.org_id, vehicle_id)
    pool = request.app.state.read_pool
    head: dict[str, Any] = {
        "vehicle_id": str(vehicle_id),
        "from": start.isoformat().replace("+00:00", "Z"),
        "to": end.isoformat().replace("+00:00", "Z"),
    }
    if max_points is not None and end - start > timedelta(days=settings.max_history_days):
        points, total = await service.hourly_history(
            pool, rollup_rules(settings), principal.org_id, vehicle_id, start, end, max_points
        )
        head.update(downsampled=True, total_points=total, sampling="hourly")
        rows = _listed(points)
    else:
        downsample = total = None
        if max_points is not None:
            total = await service.count_history(pool, principal.org_id, vehicle_id, start, end)
            if total > max_points:
                downsample = max_points
        head["downsampled"] = downsample is not None
        if total is not None:
            head["total_points"] = total
        rows = service.stream_history(pool, principal.org_id, vehicle_id, start, end, downsample)
    render, media_type = RENDERERS[format]
    headers = {}
    if format in ("gpx", "csv"):
        headers["Content-Disposition"] = f'attachment; filename="history-{vehicle_id}.{format}"'
    return StreamingResponse(render(rows, head), media_type=media_type, headers=headers)
