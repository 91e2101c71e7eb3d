"""Fixtures of the notification tests: the app on real servers, and local stand-ins for what
it calls out to (a webhook receiver, an SMTP server, the FCM HTTP v1 endpoint)."""

import asyncio
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis

from fleet_common.redis import EVENTS_STREAM, create_redis
from fleet_devstack.servers import free_port
from fleet_notification.config import Settings
from fleet_notification.main import create_app

FCM_PROJECT = "fleet-push-test"
INTERNAL_TOKEN = "notification-tests-internal-token-0123456789"


class Recorder(ThreadingHTTPServer):
    """A local HTTP server that records requests and answers from a script."""

    daemon_threads = True

    def __init__(self, answer: Callable[["Recorder", str, dict, bytes], tuple[int, dict]]):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.answer = answer
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of(self, path_part: str) -> list[tuple[str, dict, bytes]]:
        with self.lock:
            return [r for r in self.requests if path_part in r[0]]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.requests.append((self.path, headers, body))
            status, payload = self.server.answer(self.server, self.path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def webhook_receiver():
    """Answers 500 to a path containing "fail-N" for its first N calls, else 200."""
    counts: dict[str, int] = {}

    def answer(_server, path, _headers, _body):
        counts[path] = counts.get(path, 0) + 1
        if "fail-always" in path:
            return 500, {}
        if "fail-" in path and counts[path] <= int(path.rsplit("fail-", 1)[1].split("/")[0]):
            return 500, {}
        if "gone" in path:
            return 410, {}
        return 200, {"ok": True}

    server = Recorder(answer)
    yield server
    server.shutdown()


UNREGISTERED_TOKENS: set[str] = set()


@pytest.fixture(scope="session")
def fcm_standin():
    """The OAuth2 token endpoint and FCM's v1 `messages:send`, as Google answers them."""

    def answer(_server, path, headers, body):
        if path == "/token":
            return 200, {
                "access_token": "stand-in-access-token",
                "expires_in": 3600,
                "token_type": "Bearer",
            }
        if path == f"/v1/projects/{FCM_PROJECT}/messages:send":
            if headers.get("authorization") != "Bearer stand-in-access-token":
                return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
            token = json.loads(body)["message"]["token"]
            if token in UNREGISTERED_TOKENS:
                return 404, {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                }
            return 200, {"name": f"projects/{FCM_PROJECT}/messages/{uuid.uuid4().hex}"}
        return 404, {}

    server = Recorder(answer)
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def service_account_file(fcm_standin, tmp_path_factory) -> Path:
    """A service account of our own, whose token_uri is the stand-in: production code path."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path_factory.mktemp("firebase") / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": FCM_PROJECT,
                "private_key_id": "test-key",
                "private_key": pem,
                "client_email": f"fcm@{FCM_PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{fcm_standin.url}/token",
            }
        )
    )
    return path


class SmtpSink:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, _server, _session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server():
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


def notification_env(
    *,
    database_url: str,
    redis_url: str,
    jwks_url: str,
    webhook_url: str,
    smtp_port: int,
    service_account: Path,
    fcm_url: str,
) -> dict[str, str]:
    """The environment (names as in production) the tests run the service with."""
    return {
        "NOTIFICATION_DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTH_JWKS_URL": jwks_url,
        "NOTIFICATION_CLAIM_IDLE_S": "1",
        "NOTIFICATION_CLAIM_INTERVAL_S": "0.5",
        "NOTIFICATION_MAX_EVENT_ATTEMPTS": "3",
        "INTERNAL_SERVICE_TOKEN": INTERNAL_TOKEN,
        "NOTIFICATION_STREAM_BLOCK_MS": "200",
        "NOTIFICATION_DELIVERY_POLL_INTERVAL_S": "0.2",
        "NOTIFICATION_DELIVERY_RETRY_BASE_S": "0.2",
        "NOTIFICATION_DELIVERY_MAX_ATTEMPTS": "3",
        "NOTIFICATION_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
        "NOTIFICATION_SMTP_HOST": "127.0.0.1",
        "NOTIFICATION_SMTP_PORT": str(smtp_port),
        "NOTIFICATION_SMTP_STARTTLS": "false",
        "NOTIFICATION_SMTP_SENDER": "Fleet Tracker <alerts@fleet.test>",
        "NOTIFICATION_FIREBASE_CREDENTIALS_FILE": str(service_account),
        "NOTIFICATION_FCM_ENDPOINT": fcm_url,
    }


@pytest.fixture(scope="session")
def make_notification_env(
    stack,
    migrated_database,
    auth_service,
    webhook_receiver,
    smtp_server,
    service_account_file,
    fcm_standin,
):
    def factory(redis_db: int) -> dict[str, str]:
        return notification_env(
            database_url=migrated_database("notification"),
            redis_url=stack.redis.url.rsplit("/", 1)[0] + f"/{redis_db}",
            jwks_url=auth_service.jwks_url,
            webhook_url=webhook_receiver.url,
            smtp_port=smtp_server[0].port,
            service_account=service_account_file,
            fcm_url=fcm_standin.url,
        )

    return factory


@asynccontextmanager
async def running_notification(env: dict[str, str]) -> AsyncIterator[tuple]:
    """The app in-process with its consumer and worker running: (client, app, a Redis client)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    app = create_app(settings)
    redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app, redis
    await redis.aclose()


@pytest.fixture(scope="session")
async def notification(make_notification_env):
    async with running_notification(make_notification_env(3)) as running:
        yield running


def make_event(org_id, type_="overspeed", *, vehicle_id=None, ts=None, details=None, **kw):
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "org_id": str(org_id),
        "vehicle_id": str(vehicle_id or uuid.uuid4()),
        "device_id": str(uuid.uuid4()),
        "ts": (ts or datetime.now(UTC)).isoformat(),
        "position": {"lat": 10.77, "lon": 106.7, "speed_kph": 97.0},
        "details": details if details is not None else {"max_speed_kph": 97.0, "limit_kph": 80},
        **kw,
    }


async def publish(redis: Redis, *events: dict) -> None:
    for event in events:
        await redis.xadd(EVENTS_STREAM, {"event": json.dumps(event)})


async def eventually(check, timeout_s: float = 10.0, interval_s: float = 0.05):
    """Poll `check` (sync or async) until it returns a truthy value; that value."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval_s)
