"""pytest plugin: real servers for the whole test session, and helpers to use them.

By default a throwaway PostgreSQL+PostGIS, Redis and Mosquitto are started on free ports in
a temporary folder and removed at the end. A test that needs to stop and start a server
(readiness, outage tests) asks for its own with `make_stack`.

A hung session: `kill -USR1 <pytest pid>` writes every asyncio task's stack (and every
thread's) to `$TMPDIR/pytest-<pid>-tasks.txt`, where a stack dump of the threads alone shows
only an idle event loop. (A file: pytest captures file descriptor 2 while tests run.)
"""

import asyncio
import base64
import faulthandler
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fleet_devstack.servers import RedisCluster, free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT, Stack, migrate, service_command, wait_until_live


def _dump_tasks(_signum, _frame) -> None:
    path = Path(tempfile.gettempdir()) / f"pytest-{os.getpid()}-tasks.txt"
    with path.open("w") as out:
        faulthandler.dump_traceback(out)
        loop = asyncio._get_running_loop()
        tasks = asyncio.all_tasks(loop) if loop is not None else set()
        print(f"--- {len(tasks)} asyncio task(s) on the running loop", file=out)
        for task in tasks:
            print(f"--- {task!r}", file=out)
            task.print_stack(file=out)


def pytest_configure(config) -> None:
    signal.signal(signal.SIGUSR1, _dump_tasks)


# `make test` runs the suite in two workers (pytest-xdist, `--dist loadgroup`), scheduled in
# groups made here from node ids: pytest-xdist's own `xdist_group` marks have no effect under
# pytest 9.2 (xdist renames the item's `_nodeid`, which pytest no longer reads).
# - a file's tests run in one worker, where its session and module fixtures are;
# - the monitoring folder's files share one monitored stack (Prometheus, the exporters, all
#   five services): one worker;
# - the files whose every test starts servers of its own (and takes minutes) are split test by
#   test, so that the long ones spread over the workers instead of queueing in one.
_SHARED_FIXTURE_FOLDERS = ("tests/monitoring/",)
_ONE_GROUP_PER_TEST = (
    "tests/test_first_run.py",
    "services/location/tests/test_broker_durability.py",
)


def schedule_group(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path in _ONE_GROUP_PER_TEST:
        return nodeid
    return next((f for f in _SHARED_FIXTURE_FOLDERS if path.startswith(f)), path)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return schedule_group(nodeid)

    return GroupScheduling(config, log)


def _new_stack(base: Path) -> Stack:
    stack = Stack.create(
        base, pg_port=free_port(), redis_port=free_port(), mqtt_port=free_port(), durable=False
    )
    stack.start()
    return stack


@pytest.fixture(scope="session")
def make_stack() -> Iterator:
    """Start a private stack (for tests that stop servers); all are stopped at session end."""
    started: list[tuple[Stack, Path]] = []

    def factory() -> Stack:
        base = Path(tempfile.mkdtemp(prefix="fleet-stack-"))
        os.chmod(base, 0o755)
        stack = _new_stack(base)
        started.append((stack, base))
        return stack

    yield factory
    for stack, base in started:
        stack.stop()
        remove_tree(base)


EXTERNAL_VARIABLES = (
    "TEST_POSTGRES_URL",
    "TEST_REDIS_URL",
    "TEST_MQTT_URL",
    "TEST_MQTT_INGEST_USERNAME",
    "TEST_MQTT_INGEST_PASSWORD",
)


@pytest.fixture(scope="session")
def stack(make_stack) -> Stack:
    """The session's shared PostgreSQL, Redis and Mosquitto: the TEST_* servers when all are
    given (a superuser DSN, a Redis URL, an MQTT URL with the dynsec admin's credentials and
    a client allowed to subscribe to `#`), otherwise throwaway ones of our own."""
    given = [name for name in EXTERNAL_VARIABLES if os.environ.get(name)]
    if given and len(given) < len(EXTERNAL_VARIABLES):
        missing = sorted(set(EXTERNAL_VARIABLES) - set(given))
        pytest.exit(f"set all of the TEST_* server variables or none; missing: {missing}", 2)
    if given:
        return Stack.external(dict(os.environ))
    return make_stack()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-node Redis Cluster (no replicas) of our own, for the cluster-mode tests."""
    base = Path(tempfile.mkdtemp(prefix="fleet-redis-cluster-"))
    cluster = RedisCluster(base, [free_port() for _ in range(3)])
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        remove_tree(base)


@pytest.fixture(scope="session")
def make_database(stack: Stack):
    """Create a fresh, uniquely named database and return its async URL."""

    def factory(prefix: str, *, postgis: bool = False, on: Stack | None = None) -> str:
        target = on or stack
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        target.postgres.create_database(name, postgis=postgis)
        return target.postgres.url(name)

    return factory


@pytest.fixture(scope="session")
def migrated_database(make_database):
    """A fresh database for `service`, migrated to head with the service's own Alembic."""

    def factory(service: str, *, on: Stack | None = None) -> str:
        url = make_database(f"test_{service}", postgis=service == "location", on=on)
        migrate(service, {f"{service.upper()}_DATABASE_URL": url})
        return url

    return factory


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen
    log_path: Path


@pytest.fixture(scope="session")
def run_service():
    """Start a service as a real uvicorn process on a free port; returns its base URL."""
    processes: list[subprocess.Popen] = []

    def factory(
        service: str, env: dict[str, str], port: int | None = None, timeout_s: float = 180.0
    ) -> RunningService:
        port = port or free_port()
        log = open(Path(tempfile.gettempdir()) / f"fleet-{service}-{port}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            service_command(service, port),
            cwd=REPO_ROOT,
            env={**os.environ, "ENVIRONMENT": "test", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        try:
            wait_until_live(port, timeout_s, process=process)
        except Exception:
            process.kill()
            log.close()
            sys.stderr.write(Path(log.name).read_text())
            raise
        return RunningService(f"http://127.0.0.1:{port}", process, Path(log.name))

    yield factory
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class AuthService(RunningService):
    jwks_url: str = ""
    internal_token: str = ""
    keys_dir: Path | None = None  # holds the generated signing key (signing-key.pem)


TEST_PASSWORD = "Fleet-Test-Passw0rd!"  # noqa: S105 - a throwaway password for test users
TEST_FIREBASE_PROJECT = "fleet-tracker-test"


@pytest.fixture(scope="session")
def auth_service(stack: Stack, migrated_database, run_service) -> Iterator[AuthService]:
    """The real auth service on the session stack (own migrated database, generated key).

    Firebase sign-in runs in emulator mode (project `fleet-tracker-test`): firebase-admin
    accepts unsigned emulator tokens and never contacts the emulator host to verify them.
    """
    port = free_port()
    jwks_url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    keys_dir = Path(tempfile.mkdtemp(prefix="fleet-auth-keys-"))
    env = {
        "AUTH_DATABASE_URL": migrated_database("auth"),
        "REDIS_URL": stack.redis.url,
        "AUTH_JWKS_URL": jwks_url,
        "AUTH_KEYS_DIR": str(keys_dir),
        "INTERNAL_SERVICE_TOKEN": stack.secrets["internal_token"],
        "AUTH_FIREBASE_PROJECT_ID": TEST_FIREBASE_PROJECT,
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
    }
    running = run_service("auth", env, port=port)
    yield AuthService(
        running.url,
        running.process,
        running.log_path,
        jwks_url=jwks_url,
        internal_token=stack.secrets["internal_token"],
        keys_dir=keys_dir,
    )
    remove_tree(keys_dir)


@dataclass
class TestOrg:
    """An organization with one user per role, and their access tokens (`admin`,
    `dispatcher`, `viewer`), signed in again when one is about to expire: a session-scoped org
    outlives the auth service's 15-minute tokens in a long run."""

    __test__ = False  # not a test class, despite the name

    org_id: str
    tokens: dict[str, str]
    user_ids: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    password: str = TEST_PASSWORD
    auth_url: str = ""

    def token(self, role: str = "admin") -> str:
        token = self.tokens[role]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        if self.auth_url and claims["exp"] - time.time() < TOKEN_RENEWAL_MARGIN_S:
            login = httpx.post(
                f"{self.auth_url}/api/v1/auth/login",
                json={"email": self.emails[role], "password": self.password},
                timeout=30.0,
            )
            login.raise_for_status()
            token = self.tokens[role] = login.json()["access_token"]
        return token

    @property
    def admin(self) -> str:
        return self.token("admin")

    @property
    def dispatcher(self) -> str:
        return self.token("dispatcher")

    @property
    def viewer(self) -> str:
        return self.token("viewer")

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


# Longer than any one test takes with a token in hand.
TOKEN_RENEWAL_MARGIN_S = 180


@pytest.fixture(scope="session")
def make_org(auth_service: AuthService):
    """Register a new organization through the auth API, with a dispatcher and a viewer."""

    def factory(name: str | None = None) -> TestOrg:
        tag = uuid.uuid4().hex[:10]
        emails = {role: f"{role}-{tag}@example.com" for role in ("admin", "dispatcher", "viewer")}
        with httpx.Client(base_url=auth_service.url, timeout=30.0) as client:
            response = client.post(
                "/api/v1/auth/register",
                json={
                    "org_name": name or f"Test org {tag}",
                    "email": emails["admin"],
                    "password": TEST_PASSWORD,
                    "full_name": f"Admin {tag}",
                },
            )
            response.raise_for_status()
            registered = response.json()
            admin_headers = {"Authorization": f"Bearer {registered['access_token']}"}
            tokens = {"admin": registered["access_token"]}
            user_ids = {"admin": registered["user"]["id"]}
            for role in ("dispatcher", "viewer"):
                created = client.post(
                    "/api/v1/users",
                    headers=admin_headers,
                    json={
                        "email": emails[role],
                        "password": TEST_PASSWORD,
                        "full_name": f"{role.title()} {tag}",
                        "role": role,
                    },
                )
                created.raise_for_status()
                user_ids[role] = created.json()["id"]
                login = client.post(
                    "/api/v1/auth/login", json={"email": emails[role], "password": TEST_PASSWORD}
                )
                login.raise_for_status()
                tokens[role] = login.json()["access_token"]
        return TestOrg(
            org_id=registered["org"]["id"],
            tokens=tokens,
            user_ids=user_ids,
            emails=emails,
            auth_url=auth_service.url,
        )

    return factory


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def bad_tokens(auth_service: AuthService):
    """Factory: access tokens every service must refuse with 401, by name, for a `TestOrg`.

    `expired` (real key), `tampered` (role changed after signing), `alg_none`,
    `hs256_public_key` (HMAC keyed with the public key), `unknown_kid` (another key),
    `wrong_issuer` (real key), `garbage`.
    """
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (auth_service.keys_dir / "signing-key.pem").read_bytes()
    private_key = serialization.load_pem_private_key(pem, password=None)
    jwks = httpx.get(auth_service.jwks_url, timeout=10).json()
    kid = jwks["keys"][0]["kid"]
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def factory(org: TestOrg, role: str = "viewer") -> dict[str, str]:
        valid = org.token(role)
        claims = jwt.decode(valid, options={"verify_signature": False})
        now = int(time.time())
        header, _payload, signature = valid.split(".")
        tampered_claims = {**claims, "sub": str(uuid.uuid4()), "role": "admin"}
        tampered_payload = _b64url(json.dumps(tampered_claims).encode())

        def unsigned(alg: str) -> str:
            head = _b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
            return f"{head}.{_b64url(json.dumps(claims).encode())}"

        hs_input = unsigned("HS256")
        hs_signature = _b64url(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
        return {
            "expired": jwt.encode(
                {**claims, "iat": now - 3600, "exp": now - 600},
                private_key,
                algorithm="EdDSA",
                headers={"kid": kid},
            ),
            "tampered": f"{header}.{tampered_payload}.{signature}",
            "alg_none": unsigned("none") + ".",
            "hs256_public_key": f"{hs_input}.{hs_signature}",
            "unknown_kid": jwt.encode(
                claims,
                ed25519.Ed25519PrivateKey.generate(),
                algorithm="EdDSA",
                headers={"kid": "not-a-published-key"},
            ),
            "wrong_issuer": jwt.encode(
                {**claims, "iss": "someone-else"},
                private_key,
                algorithm="EdDSA",
                headers={"kid": kid},
            ),
            "garbage": "not.a.token",
        }

    return factory


@pytest.fixture(scope="session")
def sign_token(auth_service: AuthService):
    """Sign arbitrary access-token claims with the auth service's current key."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem = (auth_service.keys_dir / "signing-key.pem").read_bytes()
    private_key = serialization.load_pem_private_key(pem, password=None)
    kid = httpx.get(auth_service.jwks_url, timeout=10).json()["keys"][0]["kid"]

    def sign(claims: dict) -> str:
        return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})

    return sign
