"""One pure-ASGI middleware for request ids, the access log line, metrics and last-resort 500s.

Pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched and the
per-request overhead stays small on hot routes.
"""

import re
import time
import uuid

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_common.drain import Drain
from fleet_common.errors import problem_response
from fleet_common.logging import get_logger, request_id_var
from fleet_common.metrics import HTTP_DURATION, HTTP_REQUESTS

log = get_logger("fleet.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/vehicles/{id}`), never the raw path.

    FastAPI's own routes leave themselves in the scope; plain Starlette ones (the OpenAPI
    document, docs) do not, so those are looked up. Raw paths would explode label cardinality.
    """
    route = scope.get("route")
    if route is None and "app" in scope:
        route = next(
            (r for r in scope["app"].router.routes if r.matches(scope)[0] is Match.FULL), None
        )
    path = getattr(route, "path", None)
    return f"{scope.get('root_path', '')}{path}" if path else "unmatched"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, service: str, drain: Drain) -> None:
        self.app = app
        self.service = service
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        # A caller-supplied id is kept only if it is safe to log and to echo in a header.
        if not _VALID_REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        request_id_var.set(request_id)
        encoded_id = request_id.encode()

        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", encoded_id)]
                if self.drain.active:
                    # The client closes this connection after the answer instead of pooling
                    # it: the instance is about to stop (fleet_common.drain).
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled exception", path=scope.get("path"))
            if scope["type"] == "http" and not response_started:
                response = problem_response(
                    500,
                    "An unexpected error occurred. Quote the request id when reporting it.",
                    request_id=request_id,
                )
                await response(scope, receive, send_with_id)
            else:
                raise
        finally:
            if scope["type"] == "http":
                elapsed_s = time.perf_counter() - started
                route = route_template(scope)
                method = scope["method"]
                HTTP_REQUESTS.labels(self.service, method, route, str(status_code)).inc()
                HTTP_DURATION.labels(self.service, method, route).observe(elapsed_s)
                if not route.startswith(("/health", "/metrics")):
                    log.info(
                        "request",
                        method=method,
                        route=route,
                        path=scope.get("path"),
                        status=status_code,
                        duration_ms=round(elapsed_s * 1000, 2),
                    )
