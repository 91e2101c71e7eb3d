"""structlog logging with the request id bound to every line, and no secret in any.

JSON lines by default (production, containers, log shippers); `LOG_FORMAT=console` (what
`make run` sets) prints one readable, coloured line per event instead.

Every line, ours or a library's (uvicorn writes the WebSocket URL with its `?token=`), goes
through `redact_secrets` last: the values of secret query parameters (`token`, `key`,
`password`, ...), bearer credentials, anything shaped like a JWT, and fields named like a
secret are replaced by `[redacted]`. Tracebacks are formatted to text first in both formats,
so that they are redacted too.
"""

import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

REDACTED = "[redacted]"
SECRET_PARAMETERS = (
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "key",
    "api_key",
    "password",
    "secret",
)
_SECRET_FIELDS = frozenset(
    (*SECRET_PARAMETERS, "authorization", "http_key", "internal_token", "client_secret")
)
_SECRET_TEXT = re.compile(
    # A secret query or form parameter's value (`?token=…`, `&key=…`, `password=…`; not
    # `monkey=`).
    r"(?i)(?P<param>(?<![\w-])(?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&;\s\"'#]+"
    # A bearer credential (`Authorization: Bearer …`).
    r"|(?P<scheme>\bbearer )[\w.~+/=-]+"
    # A JWT wherever it appears (three base64url parts, the first a JSON header).
    r"|\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"
)


def _replace(match: re.Match) -> str:
    return (match.group("param") or match.group("scheme") or "") + REDACTED


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_TEXT.sub(_replace, value) if value else value
    if isinstance(value, dict):
        return {k: REDACTED if _secret_field(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _secret_field(name: Any) -> bool:
    return isinstance(name, str) and name.lower() in _SECRET_FIELDS


def redact_secrets(_logger, _name, event_dict):
    """Last processor of every line: no token, key or password is ever written."""
    for name, value in event_dict.items():
        if _secret_field(name) and value:
            event_dict[name] = REDACTED
        elif isinstance(value, str | dict | list | tuple):
            event_dict[name] = _redact_value(value)
    return event_dict


def _add_request_id(_logger, _name, event_dict):
    request_id = request_id_var.get()
    if request_id and "request_id" not in event_dict:
        event_dict["request_id"] = request_id
    return event_dict


def _renderer(log_format: str):
    if log_format == "console":
        # Colour unless the developer asked for none (https://no-color.org): under
        # `make run` stdout is a pipe to the devstack, which prints to the terminal.
        return structlog.dev.ConsoleRenderer(colors=not os.environ.get("NO_COLOR"))
    return structlog.processors.JSONRenderer()


def configure_logging(service: str, level: str = "INFO", log_format: str = "json") -> None:
    """Send structlog and stdlib logging (uvicorn, sqlalchemy, ...) to stdout, one line per
    event: JSON, or with `log_format="console"` structlog's readable console lines."""
    shared = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.add_logger_name,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            lambda _l, _n, event: {"service": service, **event},
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library warnings go through logging too, so every line a service prints is formatted.
    logging.captureWarnings(True)
    # We log one line per request ourselves; uvicorn's access log would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    # The servers' own loggers come with handlers and a level of their own (uvicorn's
    # `log_level`): through the root handler, at the service's level, like every other line.
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        server_logger = logging.getLogger(name)
        server_logger.handlers[:] = []
        server_logger.propagate = True
        server_logger.setLevel(logging.NOTSET)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
