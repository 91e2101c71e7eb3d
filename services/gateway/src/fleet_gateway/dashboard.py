"""The built dashboard (`frontend/dist`) at `/`: files, SPA fallback and cache headers.

Vite puts every hashed file under `assets/` (a new build gives them new names), so those
are cached for a year as immutable; `index.html` and the other top-level files keep their
names across builds and are revalidated on every load (`no-cache`, with the ETag that
`FileResponse` sets). A path that is not a file and has no extension is one of the app's
own routes (`/vehicles/42`): it gets `index.html` and the app's router takes it from there.

The API's prefixes are never answered with the app: an unknown `/api/…` or `/health/…` path
is a problem+json 404, not a 200 page of HTML that a client would try to parse.
"""

import os
from pathlib import Path, PurePosixPath

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from fleet_common.errors import NotFoundError, ProblemError

# Paths that belong to the gateway and its upstreams: `/api/v1/…`, OsmAnd ingest, health,
# metrics, the JWKS, and the services' internal API (never public: a 404, not the app).
RESERVED_PREFIXES = ("/api", "/ingest", "/health", "/metrics", "/.well-known", "/internal")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# Set here rather than taken from the machine's /etc/mime.types, which differs between
# hosts (and lacks some of these): a wrong type for a module script stops the app loading.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".wasm": "application/wasm",
    ".pbf": "application/x-protobuf",
    ".txt": "text/plain; charset=utf-8",
}

BUILD_COMMAND = "cd frontend && npm ci && npm run build"


class DashboardNotBuiltError(ProblemError):
    status = 503


def _not_built(scope: Scope, directory: Path) -> Response:
    detail = (
        f"The dashboard has not been built: {directory} has no index.html. "
        f"Build it with `{BUILD_COMMAND}` (`make run` does this when the build is missing "
        "or stale), or point GATEWAY_DASHBOARD_DIR at a build."
    )
    accept = Headers(scope=scope).get("accept", "")
    if "text/html" in accept:
        # A person opened the page: tell them in a page, not in JSON.
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Dashboard not built</title>"
            "<h1>The dashboard has not been built</h1>"
            f"<p>Build it with <code>{BUILD_COMMAND}</code>, then reload this page. "
            "<code>make run</code> builds it when the build is missing or stale.</p>"
            "<p>The API is up: <a href=/api/v1/docs>/api/v1/docs</a>.</p>",
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    raise DashboardNotBuiltError(detail, headers={"Cache-Control": "no-store"})


class _BuildFiles(StaticFiles):
    """Starlette's static files (path checks, ETag, 304, HEAD, ranges) with our headers."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        relative = PurePosixPath(scope["path"])
        cache = IMMUTABLE if relative.parts[1:2] == ("assets",) else REVALIDATE
        response.headers["Cache-Control"] = cache
        if response.status_code != 304:
            media_type = MEDIA_TYPES.get(PurePosixPath(str(full_path)).suffix.lower())
            if media_type is not None:
                response.headers["Content-Type"] = media_type
        return response


class Dashboard:
    """ASGI app for every path the routing table does not claim (the proxy's fallback)."""

    path = "/"  # its label in metrics and the access log

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = _BuildFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.response(scope)
        await response(scope, receive, send)

    async def response(self, scope: Scope) -> Response:
        path: str = scope["path"]
        scope["route"] = self  # one metrics label for every page and file
        if _reserved(path):
            raise NotFoundError(f"no route for {path}")
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        if not (self.directory / "index.html").is_file():
            return _not_built(scope, self.directory)
        try:
            return await self.files.get_response(self.files.get_path(scope), scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not _is_app_route(path):
                raise
        # The SPA fallback: the app's own route, answered with its page.
        fallback = {**scope, "path": "/index.html"}
        return await self.files.get_response("index.html", fallback)


def _reserved(path: str) -> bool:
    """`/api` or `/api/…` (not `/apiary`), and the other reserved prefixes."""
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


def _is_app_route(path: str) -> bool:
    """A path the app's router handles: no file extension in its last segment, and not
    under `assets/` (a missing file is a 404, not HTML served as JavaScript)."""
    parts = PurePosixPath(path).parts
    if parts[1:2] == ("assets",):
        return False
    return not PurePosixPath(path).suffix
