"""RFC 9457 problem+json errors: domain exceptions and the handlers that render them."""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description,
        **extensions,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class ProblemError(Exception):
    """A domain error that maps onto an HTTP status. Services raise these, never HTTPException."""

    status: int = 500

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


class BadRequestError(ProblemError):
    status = 400


class UnauthorizedError(ProblemError):
    status = 401

    def __init__(self, detail: str = "Missing or invalid bearer token", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class ForbiddenError(ProblemError):
    status = 403


class NotFoundError(ProblemError):
    status = 404


class ConflictError(ProblemError):
    status = 409


class UnprocessableError(ProblemError):
    """A semantically invalid request; `field` names the offending input."""

    status = 422

    def __init__(self, detail: str, *, field: str | None = None, **kw: Any) -> None:
        if field is not None:
            kw.setdefault("errors", [{"loc": field.split("."), "msg": detail}])
        super().__init__(detail, **kw)


class PayloadTooLargeError(ProblemError):
    status = 413


class TooManyRequestsError(ProblemError):
    status = 429

    def __init__(self, detail: str, *, retry_after_s: int, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after_s))})
        super().__init__(detail, **kw)


class ServiceUnavailableError(ProblemError):
    status = 503


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Pydantic includes the offending input and context objects; we echo neither back
    # (hostile input should not be reflected, and ctx may hold non-serialisable objects).
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, headers=exc.headers, **jsonable_encoder(exc.extensions)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        field = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
        detail = f"{field}: {first['msg']}" if field else first["msg"]
        return problem_response(422, detail, title="Validation Error", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(exc.status_code, detail, headers=exc.headers)
