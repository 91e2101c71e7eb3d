"""Every log line, ours or a library's, goes out without the secrets it mentions."""

import io
import json
import logging
import sys

import pytest

from fleet_common.logging import configure_logging, get_logger

JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"


@pytest.fixture
def lines(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("test")
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    logging.getLogger().handlers[:] = []


def test_uvicorns_websocket_line_loses_its_token(lines):
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/api/v1/ws?token={JWT}&x=1"
    )
    (line,) = lines()
    assert (
        line["event"] == '127.0.0.1:5000 - "WebSocket /api/v1/ws?token=[redacted]&x=1" [accepted]'
    )


def test_secret_parameters_fields_bearer_values_and_jwts_are_redacted(lines):
    get_logger("t").info(
        "request",
        path="/ingest/osmand?id=dev-1&key=s3cr3t-device-key",
        password="hunter2",
        headers={"Authorization": "Bearer abc.def", "x": [f"got {JWT} here"]},
        note="refresh_token=opaque-refresh&keep=this",
        count=3,
    )
    (line,) = lines()
    text = json.dumps(line)
    for secret in ("s3cr3t-device-key", "hunter2", "abc.def", JWT, "opaque-refresh"):
        assert secret not in text
    assert line["path"] == "/ingest/osmand?id=dev-1&key=[redacted]"
    assert line["note"] == "refresh_token=[redacted]&keep=this"
    assert line["count"] == 3
    assert line["headers"]["x"] == ["got [redacted] here"]
