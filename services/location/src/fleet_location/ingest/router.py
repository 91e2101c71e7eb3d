"""HTTP ingest (OsmAnd / Traccar Client) and the dead-letter listing."""

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from fleet_common.auth import AdminUser, InternalCaller
from fleet_common.client_address import client_address
from fleet_common.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    UnprocessableError,
)
from fleet_location.ingest.devices import DirectoryUnavailable
from fleet_location.ingest.http_access import (
    INVALID_KEY_DETAIL,
    KEY_PARAMETER,
    MISSING_KEY_DETAIL,
    IngestRateLimiter,
    RateLimited,
    redact_key,
)
from fleet_location.ingest.parsing import (
    HttpFix,
    Reason,
    Rejected,
    parse_osmand_params,
    parse_traccar_json,
)
from fleet_location.ingest.pipeline import IngestPipeline

router = APIRouter(tags=["ingest"])

_STATUS_BY_REASON = {
    Reason.TOO_LARGE: PayloadTooLargeError,
    Reason.INACTIVE_DEVICE: NotFoundError,
    Reason.OUT_OF_RANGE: UnprocessableError,
    Reason.NON_FINITE: UnprocessableError,
    Reason.FUTURE_TIMESTAMP: UnprocessableError,
    Reason.STALE_TIMESTAMP: UnprocessableError,
}


_UNKNOWN_AS_MISSING_KEY = Rejected(Reason.MISSING_KEY, MISSING_KEY_DETAIL)
_UNKNOWN_AS_INVALID_KEY = Rejected(Reason.INVALID_KEY, INVALID_KEY_DETAIL)


def _problem(exc: Rejected, key: str | None = None) -> ProblemError:
    if exc.reason == Reason.UNKNOWN_DEVICE:
        # Answered as a key failure, so that the answers do not tell which uids exist (uids
        # are IMEIs, easily guessed); the dead letter and the counter keep the real reason.
        exc = _UNKNOWN_AS_INVALID_KEY if key else _UNKNOWN_AS_MISSING_KEY
    if isinstance(exc, RateLimited):
        return TooManyRequestsError(exc.detail, retry_after_s=exc.retry_after_s, reason=exc.reason)
    if exc.reason == Reason.MISSING_KEY:
        # Not a bearer-token scheme: no WWW-Authenticate challenge a client could act on.
        return UnauthorizedError(exc.detail, headers={}, reason=exc.reason)
    if exc.reason == Reason.INVALID_KEY:
        return ForbiddenError(exc.detail, reason=exc.reason)
    error = _STATUS_BY_REASON.get(exc.reason, BadRequestError)
    return error(exc.detail, reason=exc.reason)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Rejected(Reason.TOO_LARGE, "request body is too large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise Rejected(Reason.TOO_LARGE, "request body is too large")
    return b"".join(chunks)


# One handler, two routes: OsmAnd sends GET, Traccar Client POST (each its own operation).
@router.get("/ingest/osmand", operation_id="ingest_osmand_get")
@router.post("/ingest/osmand", operation_id="ingest_osmand_post")
async def ingest_osmand(request: Request) -> Response:
    """OsmAnd protocol: GET query, POST form or query, or Traccar Client's JSON body.

    The request carries the device's HTTP key as `key` (query or form) unless the device is
    opted out: 401 without it, 403 with another key; an unknown uid is answered the same way,
    so that the answers do not tell which devices exist. 429 past the per-address or per-device
    rate limit. 200 once the position is committed; a refused position is dead-lettered
    (its key redacted) and answered with a 4xx problem; 503 when it cannot be stored now
    (the client retries).
    """
    pipeline: IngestPipeline = request.app.state.ingest
    limiter: IngestRateLimiter = request.app.state.ingest_limiter
    settings = request.app.state.settings
    query = request.url.query.encode()
    raw = b""
    try:
        await limiter.admit_address(client_address(request, settings.trusted_proxies))
        raw = await _body(request, settings.max_payload_bytes)
        fixes, key = _fixes(request, raw, pipeline)
    except Rejected as exc:
        pipeline.reject_http(exc, redact_key(raw or query))
        raise _problem(exc) from None
    try:
        stored = await pipeline.ingest_http(fixes, redact_key(raw or query), key, limiter)
    except Rejected as exc:
        raise _problem(exc, key) from None
    except DirectoryUnavailable:
        raise ServiceUnavailableError("device directory unavailable; retry later") from None
    except TimeoutError:
        raise ServiceUnavailableError(
            "position not stored yet; retry later", headers={"Retry-After": "5"}
        ) from None
    return Response(status_code=200, headers={"X-Positions-Stored": str(stored)})


def _fixes(
    request: Request, raw: bytes, pipeline: IngestPipeline
) -> tuple[list[HttpFix], str | None]:
    """The request's positions and the device key it carries (never kept as an attribute)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and content_type not in (
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
    ):
        raise Rejected(Reason.INVALID_PAYLOAD, "unsupported content type")
    try:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=100))
        if raw and content_type != "application/json":
            form = raw.decode("utf-8")
            params.update(parse_qsl(form, keep_blank_values=True, max_num_fields=100))
    except (ValueError, UnicodeDecodeError):
        raise Rejected(Reason.INVALID_PAYLOAD, "malformed parameters") from None
    key = params.pop(KEY_PARAMETER, None)
    if raw and content_type == "application/json":
        return parse_traccar_json(raw, pipeline.limits), key
    return [parse_osmand_params(params)], key


class RejectionOut(BaseModel):
    id: int
    received_at: datetime
    source: str
    reason: str
    device_uid: str | None
    org_id: UUID | None
    detail: str
    payload: str


class RejectionPage(BaseModel):
    items: list[RejectionOut]
    next_before_id: int | None


async def _list_rejections(
    request: Request,
    org_id: UUID | None,
    *,
    scoped: bool,
    limit: int,
    before_id: int | None,
    reason: str | None,
) -> RejectionPage:
    pool = request.app.state.read_pool
    rows = await pool.fetch(
        """
        SELECT id, received_at, source, reason, device_uid, org_id, detail, payload
        FROM telemetry_rejections
        WHERE (NOT $1 OR org_id = $2)
          AND ($3::bigint IS NULL OR id < $3)
          AND ($4::text IS NULL OR reason = $4)
        ORDER BY id DESC LIMIT $5
        """,
        scoped,
        org_id,
        before_id,
        reason,
        limit,
    )
    items = [
        RejectionOut(
            **{k: row[k] for k in ("id", "received_at", "source", "reason", "device_uid")},
            org_id=row["org_id"],
            detail=row["detail"],
            payload=bytes(row["payload"])
            .decode("utf-8", errors="replace")
            .replace("\x00", "\ufffd"),
        )
        for row in rows
    ]
    return RejectionPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


Limit = Annotated[int, Query(ge=1, le=500)]
BeforeId = Annotated[int | None, Query(ge=1, le=2**62)]
ReasonFilter = Annotated[str | None, Query(max_length=64)]


@router.get("/api/v1/ingest/rejections", response_model=RejectionPage)
async def list_rejections(
    request: Request,
    principal: AdminUser,
    limit: Limit = 100,
    before_id: BeforeId = None,
    reason: ReasonFilter = None,
) -> RejectionPage:
    """Refused telemetry of this org's devices, newest first (admins)."""
    return await _list_rejections(
        request, principal.org_id, scoped=True, limit=limit, before_id=before_id, reason=reason
    )


@router.get(
    "/internal/ingest/rejections", response_model=RejectionPage, dependencies=[InternalCaller]
)
async def list_all_rejections(
    request: Request,
    limit: Limit = 100,
    before_id: BeforeId = None,
    reason: ReasonFilter = None,
) -> RejectionPage:
    """Every refused message, unknown devices included (operators, not tenants)."""
    return await _list_rejections(
        request, None, scoped=False, limit=limit, before_id=before_id, reason=reason
    )
