"""`/api/v1/openapi.json` (the combined document) and `/api/v1/docs` (Swagger UI, offline).

The document is merged from each upstream's own `/openapi.json`, fetched through the
gateway's upstream pools and kept for `openapi_cache_s`. An upstream that cannot be reached
keeps its last good document; one never fetched is left out and named in
`info.x-unavailable-services`, and the merge is tried again on the next request rather
than kept for the whole period. Swagger UI's files come from the `fastapi-offline` package
and are served by the gateway itself, so the page works with no internet.
"""

import asyncio
import json
import time
from importlib.metadata import version
from importlib.resources import files
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from fleet_common.errors import ServiceUnavailableError
from fleet_common.logging import get_logger
from fleet_gateway.openapi import combined_openapi
from fleet_gateway.proxy import Upstream

log = get_logger(__name__)

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
DOCS_ASSETS_PATH = "/api/v1/docs/assets"
SWAGGER_UI_FILES = files("fastapi_offline") / "static"

router = APIRouter(include_in_schema=False)


def docs_assets() -> StaticFiles:
    """Swagger UI's script, stylesheet and icon, for mounting at `DOCS_ASSETS_PATH`."""
    return StaticFiles(directory=str(SWAGGER_UI_FILES))


class CombinedOpenAPI:
    """The merged document, rebuilt from the upstreams at most once per `max_age_s`."""

    def __init__(self, upstreams: dict[str, Upstream], max_age_s: float) -> None:
        self.upstreams = upstreams
        self.max_age_s = max_age_s
        self._documents: dict[str, dict[str, Any]] = {}
        self._combined: dict[str, Any] | None = None
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:  # concurrent requests share one round of fetches
            fresh = time.monotonic() - self._built_at < self.max_age_s
            if self._combined is None or not fresh:
                await self._rebuild()
            assert self._combined is not None
            return self._combined

    async def _rebuild(self) -> None:
        names = sorted(self.upstreams)
        fetched = await asyncio.gather(*(self._fetch(name) for name in names))
        for name, document in zip(names, fetched, strict=True):
            if document is not None:
                self._documents[name] = document
        missing = [name for name in names if name not in self._documents]
        if len(missing) == len(names):
            raise ServiceUnavailableError("no service answered with its OpenAPI document")
        combined = combined_openapi(self._documents, version=version("fleet-gateway"))
        if missing:
            combined["info"]["x-unavailable-services"] = missing
        self._combined = combined
        # A document with a hole is rebuilt on the next request, a whole one after max_age_s.
        self._built_at = time.monotonic() if not missing else 0.0

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        try:
            response = await self.upstreams[name].get("/openapi.json")
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            document = json.loads(response.content)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("openapi document unavailable", upstream=name, error=str(exc))
            return None
        return document


@router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> JSONResponse:
    combined: CombinedOpenAPI = request.app.state.combined_openapi
    return JSONResponse(await combined.document(), headers={"Cache-Control": "no-cache"})


@router.get(DOCS_PATH)
async def docs_page() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="Fleet Tracker API",
        swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
        # Swagger UI would otherwise send the document to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
