"""Forwarding a public request to its upstream service, bodies streamed both ways.

The proxy path is a plain ASGI app (`Forwarder`) on the app's catch-all route: no FastAPI
request parsing, dependency solving or `StreamingResponse` task group per request. It talks
to each upstream through that upstream's pooled httpx transport directly (the public
`AsyncBaseTransport.handle_async_request` API), which skips what `AsyncClient.send` adds and
a proxy does not want: cookie persistence across users, redirect and auth handling, event
hooks. Failures raise `ProblemError`s, rendered as problem+json by the app's handlers.
"""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import lru_cache

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_common.auth import Principal, TokenVerifier, bearer_token
from fleet_common.client_address import client_address, is_trusted
from fleet_common.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from fleet_common.http import UPSTREAM_KEEPALIVE_S
from fleet_common.logging import get_logger, request_id_var
from fleet_gateway.config import Settings
from fleet_gateway.rate_limit import RateLimiter
from fleet_gateway.routing import match_route

log = get_logger(__name__)

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway itself on the way up.
NOT_FORWARDED_UP = HOP_BY_HOP | {
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-request-id",
    b"x-internal-token",
}
# Set by the gateway itself on the way down (uvicorn adds Date and Server; the access
# middleware adds X-Request-ID, the id the upstream got): one of each, not two.
NOT_FORWARDED_DOWN = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}
_NO_BODY = httpx.ByteStream(b"")
POOL_SHARDS = 4
# RFC 9110 §9.2.2: requests a client may send again when their connection closed before an
# answer. Only those without a body are: a body streams through once, as the client sends it.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})


class BadGatewayError(ProblemError):
    status = 502


class GatewayTimeoutError(ProblemError):
    status = 504


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream service: its base URL and its connection pool, in a few shards.

    httpcore checks every idle connection of a pool (a socket poll each) to assign every
    request and again to release it; with 16 concurrent requests that was a third of the
    gateway's CPU. Requests go round-robin over `POOL_SHARDS` smaller pools instead.
    """

    name: str
    base_url: httpx.URL
    host_header: bytes
    transports: tuple[httpx.AsyncHTTPTransport, ...]
    timeout: dict[str, float | None]
    rotation: Iterator[httpx.AsyncHTTPTransport]

    def next_transport(self) -> httpx.AsyncHTTPTransport:
        """The pool shard for the next request (round-robin)."""
        return next(self.rotation)

    async def get(self, path: str) -> httpx.Response:
        """A small buffered GET (readiness checks)."""
        request = httpx.Request(
            "GET",
            _upstream_url(self.base_url, path.encode()),
            headers=[(b"host", self.host_header)],
            stream=_NO_BODY,
            extensions={"timeout": self.timeout},
        )
        response = await self.next_transport().handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()  # the connection goes back to the pool, even on errors
        return response

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


def create_upstreams(settings: Settings) -> dict[str, Upstream]:
    """One pooled transport per upstream service."""
    timeout = httpx.Timeout(
        settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
    ).as_dict()
    shards = min(POOL_SHARDS, settings.upstream_max_connections)
    per_shard = -(-settings.upstream_max_connections // shards)
    limits = httpx.Limits(
        max_connections=per_shard,
        max_keepalive_connections=per_shard,
        keepalive_expiry=UPSTREAM_KEEPALIVE_S,
    )
    upstreams = {}
    for name, url in settings.upstream_urls().items():
        base = httpx.URL(url)
        transports = tuple(httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards))
        upstreams[name] = Upstream(
            name=name,
            base_url=base,
            host_header=base.netloc,
            transports=transports,
            timeout=timeout,
            rotation=itertools.cycle(transports),
        )
    return upstreams


@lru_cache(maxsize=4096)
def _upstream_url(base: httpx.URL, target: bytes) -> httpx.URL:
    # Parsing a URL costs more than the rest of building the request; paths repeat a lot.
    return base.copy_with(raw_path=target)


def _connection_headers(pairs: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in `Connection` are hop-by-hop for this message too."""
    named: set[bytes] = set()
    for key, value in pairs:
        if key.lower() == b"connection":
            named.update(p.strip().lower() for p in value.split(b",") if p.strip())
    return named


class _RequestBody(httpx.AsyncByteStream):
    """The client's body as it arrives, refused past `max_bytes` (chunked bodies included)."""

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self.receive = receive
        self.max_bytes = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                raise PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _rate_limit_subject(scope: Scope, principal: Principal | None) -> str:
    if principal is not None:
        return f"user:{principal.user_id}"
    # Not by OsmAnd's `id`: anyone can send any id, and a new id each time would be a new
    # budget. The location service limits each device once its key proved who it is.
    request = Request(scope)
    settings: Settings = scope["app"].state.settings
    return f"address:{client_address(request, settings.trusted_proxies)}"


class Forwarder:
    """The proxy as a plain ASGI app: check, limit and forward by the routing table.

    Paths the table does not claim go to `fallback` (the dashboard), or are a 404.
    """

    def __init__(self, fallback: ASGIApp | None = None) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        settings: Settings = state.settings
        path: str = scope["path"]
        rule = match_route(path)
        if rule is None:
            if self.fallback is None:
                raise NotFoundError(f"no route for {path}")
            await self.fallback(scope, receive, send)
            return
        # Metrics and the access log label the request by its routing rule.
        scope["route"] = rule

        headers: list[tuple[bytes, bytes]] = scope["headers"]
        authorization = declared_length = incoming_xff = None
        chunked = False
        connection_named: set[bytes] = set()
        for key, value in headers:
            if key == b"authorization":
                authorization = value
            elif key == b"content-length":
                declared_length = value
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"x-forwarded-for":
                incoming_xff = value
            elif key == b"connection":
                connection_named = _connection_headers([(key, value)])

        if declared_length is not None:
            if not declared_length.isdigit():
                raise PayloadTooLargeError("invalid Content-Length")
            if int(declared_length) > settings.max_body_bytes:
                raise PayloadTooLargeError(
                    f"request body is larger than {settings.max_body_bytes} bytes"
                )

        principal = None
        if not rule.public:
            verifier: TokenVerifier = state.token_verifier
            principal = await verifier.verify(
                bearer_token(authorization.decode("latin-1") if authorization else None)
            )

        limiter: RateLimiter = state.rate_limiter
        retry_after_s = await limiter.hit(
            rule.group, _rate_limit_subject(scope, principal), settings.rate_limit(rule.group)
        )
        if retry_after_s is not None:
            raise TooManyRequestsError("rate limit exceeded", retry_after_s=retry_after_s)

        upstream: Upstream = state.upstreams[rule.upstream]
        drop = NOT_FORWARDED_UP | connection_named if connection_named else NOT_FORWARDED_UP
        up_headers = [(b"host", upstream.host_header)]
        up_headers.extend((k, v) for k, v in headers if k not in drop)
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        # A client's own X-Forwarded-For is believed only from a trusted load balancer.
        if incoming_xff and is_trusted(peer, settings.trusted_proxies):
            up_headers.append((b"x-forwarded-for", incoming_xff + b", " + peer.encode()))
        else:
            up_headers.append((b"x-forwarded-for", peer.encode()))
        up_headers.append((b"x-forwarded-proto", scope["scheme"].encode()))
        up_headers.append((b"x-request-id", request_id_var.get().encode()))

        has_body = declared_length not in (None, b"0") or chunked
        if has_body and declared_length is None:
            up_headers.append((b"transfer-encoding", b"chunked"))
        # The raw path and query go up byte for byte, as the client encoded them.
        target = scope.get("raw_path") or path.encode()
        query = scope.get("query_string", b"")
        request = httpx.Request(
            scope["method"],
            _upstream_url(upstream.base_url, target + b"?" + query if query else target),
            headers=up_headers,
            stream=_RequestBody(receive, settings.max_body_bytes) if has_body else _NO_BODY,
            extensions={"timeout": upstream.timeout},
        )
        try:
            try:
                response = await upstream.next_transport().handle_async_request(request)
            except httpx.RemoteProtocolError:
                # A pooled connection the upstream closed as the request went out: an
                # instance stopped without draining first (fleet_common.drain: a rolling
                # update drains) closes its idle keep-alive connections. The request never
                # reached it; send it again, once, on another.
                if has_body or scope["method"] not in IDEMPOTENT_METHODS:
                    raise
                response = await upstream.next_transport().handle_async_request(request)
        except ClientDisconnect:
            return  # nobody left to answer
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
        await _relay(response, receive, send)


async def _relay(response: httpx.Response, receive: Receive, send: Send) -> None:
    """Send the upstream's response on, chunk by chunk, without its hop-by-hop headers."""
    stream = response.stream
    watcher: asyncio.Future | None = None
    try:
        raw = response.headers.raw
        drop = NOT_FORWARDED_DOWN | _connection_headers(raw)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.lower(), v) for k, v in raw if k.lower() not in drop],
            }
        )
        # One chunk is held back so the last one goes out with more_body=False: most
        # responses are a single chunk and a single send.
        pending: bytes | None = None
        async for chunk in stream:  # type: ignore[union-attr]
            if pending is not None:
                # A body of several chunks may be long: stop reading it once the client
                # is gone. Watching costs a task, so only such bodies get one.
                if watcher is None:
                    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
                elif watcher.done():
                    return
                await send({"type": "http.response.body", "body": pending, "more_body": True})
            pending = chunk
        message: Message = {"type": "http.response.body", "body": pending or b""}
        await send(message)
    except httpx.TransportError as exc:
        # Too late for a problem response: the status line is out. Cut the connection.
        log.warning("upstream failed mid-response", error=repr(exc))
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        await stream.aclose()  # type: ignore[union-attr]
