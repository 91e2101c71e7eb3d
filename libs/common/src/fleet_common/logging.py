"""structlog logging with the request id bound to every line.

JSON lines by default (production, containers, log shippers); `LOG_FORMAT=console` (what
`make run` sets) prints one readable, coloured line per event instead.
"""

import logging
import os
import sys
from contextvars import ContextVar

import structlog

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


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
            # The console renderer prints tracebacks itself, readably.
            *([] if log_format == "console" else [structlog.processors.format_exc_info]),
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
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
