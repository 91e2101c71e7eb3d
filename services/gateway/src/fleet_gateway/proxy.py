"""Forwarding a public request to its upstream service, bodies streamed both ways."""

from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from fleet_common.auth import Principal, TokenVerifier, bearer_token
from fleet_common.client_address import client_address, is_trusted
from fleet_common.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from fleet_common.logging import get_logger, request_id_var
from fleet_gateway.config import Settings
from fleet_gateway.rate_limit import RateLimiter
from fleet_gateway.routing import RouteRule, match_route

log = get_logger(__name__)

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway itself (or by httpx) on the way up.
NOT_FORWARDED_UP = HOP_BY_HOP | {"host", "x-forwarded-for", "x-request-id", "x-internal-token"}


class BadGatewayError(ProblemError):
    status = 502


class GatewayTimeoutError(ProblemError):
    status = 504


def create_upstream_clients(settings: Settings) -> dict[str, httpx.AsyncClient]:
    """One pooled client per upstream service."""
    timeout = httpx.Timeout(
        settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
    )
    limits = httpx.Limits(
        max_connections=settings.upstream_max_connections,
        max_keepalive_connections=settings.upstream_max_connections,
        keepalive_expiry=30,
    )
    return {
        name: httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits)
        for name, url in settings.upstream_urls().items()
    }


def _connection_headers(pairs: list[tuple[str, str]]) -> set[str]:
    """Headers named in `Connection` are hop-by-hop for this message too."""
    named: set[str] = set()
    for key, value in pairs:
        if key.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


def _upstream_headers(request: Request, settings: Settings) -> list[tuple[str, str]]:
    pairs = request.headers.items()
    drop = NOT_FORWARDED_UP | _connection_headers(pairs)
    headers = [(k, v) for k, v in pairs if k not in drop]
    peer = request.client.host if request.client else "unknown"
    incoming = request.headers.get("x-forwarded-for")
    # A client's own X-Forwarded-For is believed only from a trusted load balancer.
    trusted_peer = is_trusted(peer, settings.trusted_proxies)
    chain = f"{incoming}, {peer}" if incoming and trusted_peer else peer
    headers.append(("x-forwarded-for", chain))
    headers.append(("x-forwarded-proto", request.url.scheme))
    headers.append(("x-request-id", request_id_var.get()))
    return headers


async def _limited_body(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLargeError(f"request body is larger than {max_bytes} bytes")
        if chunk:
            yield chunk


def _rate_limit_subject(request: Request, rule: RouteRule, principal: Principal | None) -> str:
    if principal is not None:
        return f"user:{principal.user_id}"
    if rule.group == "ingest":
        # Devices share carrier NAT addresses; each device gets its own budget.
        device_id = request.query_params.get("id") or request.query_params.get("deviceid")
        if device_id:
            return f"device:{device_id[:64]}"
    settings: Settings = request.app.state.settings
    return f"address:{client_address(request, settings.trusted_proxies)}"


async def forward(request: Request) -> Response:
    """Check, limit and forward one request by the routing table."""
    settings: Settings = request.app.state.settings
    rule = match_route(request.url.path)
    if rule is None:
        raise NotFoundError(f"no route for {request.url.path}")

    declared_length = request.headers.get("content-length")
    if declared_length is not None:
        if not declared_length.isdigit():
            raise PayloadTooLargeError("invalid Content-Length")
        if int(declared_length) > settings.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body is larger than {settings.max_body_bytes} bytes"
            )

    principal = None
    if not rule.public:
        verifier: TokenVerifier = request.app.state.token_verifier
        principal = await verifier.verify(bearer_token(request.headers.get("authorization")))

    limiter: RateLimiter = request.app.state.rate_limiter
    retry_after_s = await limiter.hit(
        rule.group, _rate_limit_subject(request, rule, principal), settings.rate_limit(rule.group)
    )
    if retry_after_s is not None:
        raise TooManyRequestsError("rate limit exceeded", retry_after_s=retry_after_s)

    has_body = (declared_length not in (None, "0")) or "chunked" in request.headers.get(
        "transfer-encoding", ""
    ).lower()
    client: httpx.AsyncClient = request.app.state.upstreams[rule.upstream]
    upstream_request = client.build_request(
        request.method,
        request.url.path,
        params=request.url.query.encode("latin-1") if request.url.query else None,
        headers=_upstream_headers(request, settings),
        content=_limited_body(request, settings.max_body_bytes) if has_body else None,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except PayloadTooLargeError:
        raise
    except httpx.TimeoutException as exc:
        if isinstance(exc, httpx.ConnectTimeout):
            raise ServiceUnavailableError(
                f"the {rule.upstream} service is unreachable", service=rule.upstream
            ) from exc
        raise GatewayTimeoutError(
            f"the {rule.upstream} service did not answer in time", service=rule.upstream
        ) from exc
    except httpx.ConnectError as exc:
        raise ServiceUnavailableError(
            f"the {rule.upstream} service is unreachable", service=rule.upstream
        ) from exc
    except httpx.TransportError as exc:
        log.warning("upstream failed", upstream=rule.upstream, error=repr(exc))
        raise BadGatewayError(
            f"the {rule.upstream} service failed to answer", service=rule.upstream
        ) from exc

    pairs = upstream.headers.multi_items()
    drop = HOP_BY_HOP | _connection_headers(pairs)
    response_headers = [(k, v) for k, v in pairs if k.lower() not in drop]
    response = StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        background=BackgroundTask(upstream.aclose),
    )
    # StreamingResponse sets no headers of its own besides these; replace them wholesale.
    response.raw_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response_headers
    ]
    return response
