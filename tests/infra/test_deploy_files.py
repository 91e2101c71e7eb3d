"""The deployment files: Dockerfiles, compose files, the broker setup and the CI workflow.

Nothing here needs Docker. The linters and schemas catch what is malformed; the invariants
below catch what is well-formed but wrong (a service without a health check, a database port
published in production, a secret with a default); and the prestart script, the gunicorn
settings and the broker scripts are run for real, outside a container.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet_devstack.servers import Mosquitto
from fleet_location.ingest.mqtt import BufferedClient

REPO = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {
    "gateway": 8000,
    "auth": 8001,
    "vehicle": 8002,
    "location": 8003,
    "notification": 8004,
}
DOCKERFILES = {name: REPO / "services" / name / "Dockerfile" for name in SERVICE_PORTS}
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_PROD = REPO / "docker-compose.prod.yml"
WORKFLOW = REPO / ".github" / "workflows" / "ci-cd.yml"
MOSQUITTO_DIR = REPO / "infrastructure" / "mosquitto"
DOCKER_DIR = REPO / "infrastructure" / "docker"
SHELL_SCRIPTS = sorted([*DOCKER_DIR.glob("*.sh"), *MOSQUITTO_DIR.glob("*.sh")])

DATA_STORES = {"auth-db", "vehicle-db", "location-db", "notification-db", "redis"}
DATA_STORE_PORTS = {5432, 6379}

COMMON_ENV = {
    "ENVIRONMENT",
    "LOG_LEVEL",
    "REDIS_URL",
    "AUTH_JWKS_URL",
    "JWT_ISSUER",
    "INTERNAL_SERVICE_TOKEN",
}
SERVICE_ENV = {
    "auth": {"AUTH_DATABASE_URL", "AUTH_SIGNING_KEY_FILE", "AUTH_ALLOW_REGISTRATION"},
    "vehicle": {
        "VEHICLE_DATABASE_URL",
        "MQTT_HOST",
        "MQTT_PORT",
        "VEHICLE_MQTT_ADMIN_USERNAME",
        "VEHICLE_MQTT_ADMIN_PASSWORD",
    },
    "location": {
        "LOCATION_DATABASE_URL",
        "MQTT_HOST",
        "MQTT_PORT",
        "LOCATION_MQTT_USERNAME",
        "LOCATION_MQTT_PASSWORD",
        "LOCATION_VEHICLE_URL",
    },
    "notification": {"NOTIFICATION_DATABASE_URL"},
    "gateway": {
        "GATEWAY_AUTH_URL",
        "GATEWAY_VEHICLE_URL",
        "GATEWAY_LOCATION_URL",
        "GATEWAY_NOTIFICATION_URL",
        "GATEWAY_CORS_ORIGINS",
    },
}
# Environment entries that hold a secret, or a URL with one in it.
SECRET_KEY = re.compile(r"PASSWORD|TOKEN$|DATABASE_URL$|REDIS_URL$|^REDISCLI_AUTH$")


def tool(name: str) -> str:
    """A command-line tool installed in this virtualenv (a dev dependency) or on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed: run `uv sync --all-packages`")
    return found


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Dockerfiles -------------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not current and not stripped):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        current = ""
    return result


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def copy_sources(dockerfile: Path) -> list[str]:
    """Paths each COPY takes from the build context (COPY --from takes from a stage)."""
    sources = []
    for keyword, arguments in instructions(dockerfile):
        if keyword != "COPY":
            continue
        words = arguments.split()
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


# Every Dockerfile in the repository, the dashboard's included once it is there.
ALL_DOCKERFILES = sorted(
    p
    for p in REPO.glob("**/Dockerfile")
    if not {"node_modules", ".venv", ".git"} & set(p.relative_to(REPO).parts)
)


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile):
    result = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_covers_every_service():
    assert set(DOCKERFILES.values()) <= set(ALL_DOCKERFILES)


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_dockerfile_runs_the_service_on_its_port_as_non_root(service):
    port = SERVICE_PORTS[service]
    steps = final_stage(DOCKERFILES[service])
    by_keyword: dict[str, list[str]] = {}
    for keyword, arguments in steps:
        by_keyword.setdefault(keyword, []).append(arguments)

    assert by_keyword["EXPOSE"] == [str(port)]
    user = by_keyword["USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"numeric non-root user, got {user}"
    assert json.loads(by_keyword["ENTRYPOINT"][-1]) == ["fleet-prestart"]

    command = json.loads(by_keyword["CMD"][-1])
    assert command[0] == "gunicorn"
    assert command[command.index("--bind") + 1] == f"0.0.0.0:{port}"
    assert command[-1] == f"fleet_{service}.main:create_app()"
    assert not {"-w", "--workers"} & set(command), "workers come from WEB_CONCURRENCY"

    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/health/liveness" in healthcheck
    # python:3.11-slim has neither curl nor wget.
    assert "urllib.request" in healthcheck
    env = " ".join(by_keyword["ENV"])
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env
    assert "WEB_CONCURRENCY=" in env


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_dockerfile_builds_from_the_lock_without_dev_dependencies(service):
    dockerfile = DOCKERFILES[service]
    runs = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "RUN"]
    syncs = [command for command in runs if "uv sync" in command]
    assert syncs, "the builder installs with uv sync"
    for command in syncs:
        assert "--frozen" in command
        assert "--no-dev" in command
        assert f"--package fleet-{service}" in command
    froms = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "FROM"]
    # Both stages share one pinned image: the virtualenv links to the builder's interpreter.
    assert [line.split()[0] for line in froms] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", dockerfile.read_text())


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_dockerfile_ships_migrations_where_alembic_runs(service):
    has_migrations = (REPO / "services" / service / "alembic.ini").exists()
    sources = copy_sources(DOCKERFILES[service])
    assert (f"services/{service}/alembic.ini" in sources) == has_migrations
    assert (f"services/{service}/migrations/" in sources) == has_migrations


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as (is_exception, regex), with Docker's matching rules."""
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex = re.escape(pattern)
        regex = regex.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((exception, re.compile(f"^{regex}$")))
    return patterns


def in_build_context(path: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exception, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not exception
    return not excluded


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_everything_the_dockerfile_copies_is_in_the_build_context(service):
    patterns = dockerignore_patterns()
    for source in copy_sources(DOCKERFILES[service]):
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in relative:
                continue
            assert in_build_context(relative, patterns), f"{relative} is excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "secrets/auth-signing-key.pem",
        ".git/config",
        ".venv/bin/python",
        "services/auth/tests/test_login.py",
        "libs/common/src/fleet_common/__pycache__/app.cpython-311.pyc",
        "frontend/node_modules/react/index.js",
    ],
)
def test_build_context_leaves_out_secrets_and_local_state(path):
    assert not in_build_context(path, dockerignore_patterns())


# --- compose files -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PROD], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path):
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_matches_the_github_workflow_schema():
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def one_shot_jobs(services: dict) -> set[str]:
    """Services something waits for to *complete*: migrations, broker setup, key setup."""
    return {
        name
        for service in services.values()
        for name, dependency in (service.get("depends_on") or {}).items()
        if dependency.get("condition") == "service_completed_successfully"
    }


def test_every_compose_service_has_a_health_check():
    services = load_yaml(COMPOSE)["services"]
    one_shots = one_shot_jobs(services)
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        if name in one_shots:
            # A job exits: nothing to probe, and `up --wait` waits for it to complete instead.
            assert service["healthcheck"] == {"disable": True}, name
            assert service.get("restart") == "no", name
        else:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_every_dependency_waits_for_a_condition():
    services = load_yaml(COMPOSE)["services"]
    conditions = {"service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on as a list waits for nothing"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec.get("condition") in conditions, f"{name} -> {dependency}"


def test_every_long_running_dependency_is_waited_for_healthy():
    services = load_yaml(COMPOSE)["services"]
    one_shots = one_shot_jobs(services)
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in one_shots else "service_healthy"
            )
            assert spec["condition"] == expected, f"{name} -> {dependency}"


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_service_is_built_from_the_repo_root_and_waits_for_its_migrations(service):
    services = load_yaml(COMPOSE)["services"]
    assert services[service]["build"] == {
        "context": ".",
        "dockerfile": f"services/{service}/Dockerfile",
    }
    readiness = f"http://127.0.0.1:{SERVICE_PORTS[service]}/health/readiness"
    assert readiness in " ".join(services[service]["healthcheck"]["test"])

    if not (REPO / "services" / service / "alembic.ini").exists():
        return
    migrate = services[f"{service}-migrate"]
    assert migrate["build"] == services[service]["build"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["environment"] == services[service]["environment"]
    assert services[service]["depends_on"][f"{service}-migrate"] == {
        "condition": "service_completed_successfully"
    }


@pytest.mark.parametrize("service", SERVICE_PORTS)
def test_service_gets_the_environment_it_reads(service):
    environment = load_yaml(COMPOSE)["services"][service]["environment"]
    missing = (COMMON_ENV | SERVICE_ENV[service]) - set(environment)
    assert not missing, f"{service} lacks {sorted(missing)}"
    assert environment["AUTH_JWKS_URL"] == "http://auth:8001/.well-known/jwks.json"
    database_url = environment.get(f"{service.upper()}_DATABASE_URL")
    if database_url is not None:
        # Its own database server and database, nobody else's.
        assert database_url.startswith("postgresql+asyncpg://")
        assert f"@{service}-db:5432/{service}_db" in database_url


def strings(node) -> list[str]:
    """Every string value in a loaded YAML document."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PROD], ids=lambda p: p.name)
def test_compose_values_have_no_bare_dollar(path):
    # `$SYS` in a health check would be interpolated by compose as a variable (to nothing);
    # a literal dollar is written `$$`.
    bare = [
        value
        for value in strings(load_yaml(path))
        if re.search(r"\$(?!\{)", value.replace("$$", ""))
    ]
    assert not bare


def test_development_compose_runs_without_any_variable_set():
    # Every ${VAR} has a development default: `docker compose up` works on a fresh clone.
    text = COMPOSE.read_text()
    variables = re.findall(r"\$\{[^}]*\}", text)
    assert variables
    without_default = [v for v in variables if ":-" not in v]
    assert not without_default, without_default


def published_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split(":")[-1].split("/")[0]))
    return ports


def test_databases_and_redis_publish_no_ports():
    # The production override cannot take away a port the base file publishes, so neither
    # file may publish a data store.
    for path in (COMPOSE, COMPOSE_PROD):
        for name, service in load_yaml(path)["services"].items():
            if name in DATA_STORES:
                assert "ports" not in service, f"{path.name}: {name} publishes ports"
            assert not published_ports(service) & DATA_STORE_PORTS, f"{path.name}: {name}"


def test_only_the_public_entries_are_published():
    services = load_yaml(COMPOSE)["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    # The dashboard's nginx; Grafana (profile monitoring) only on this machine's loopback.
    assert published == {"gateway", "mosquitto", "location", "frontend", "grafana"}
    # Of the location service, only the Teltonika and GT06 listeners (not its HTTP API).
    assert published_ports(services["location"]) == {5027, 5023}
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


# --- production override -------------------------------------------------------------------


def test_production_override_only_names_services_of_the_base_file():
    # A misspelt name would silently add a new, broken service instead of overriding one.
    base = set(load_yaml(COMPOSE)["services"])
    assert set(load_yaml(COMPOSE_PROD)["services"]) <= base


def test_production_requires_every_secret():
    prod = load_yaml(COMPOSE_PROD)
    checked = 0
    for name, service in prod["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.search(r"\$\{[A-Z_]+:\?", str(value)), f"{name}.{key} = {value}"
                checked += 1
    assert checked >= 20
    redis_command = prod["services"]["redis"]["command"]
    password = redis_command[redis_command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")
    defaults = re.findall(r"\$\{([A-Z_]+):-", COMPOSE_PROD.read_text())
    assert not [d for d in defaults if SECRET_KEY.search(d)], defaults


def test_production_sets_every_secret_the_base_file_defaults():
    # Each dev-default secret of the base file must be overridden, or production inherits it.
    base = load_yaml(COMPOSE)["services"]
    prod = load_yaml(COMPOSE_PROD)["services"]
    for name, service in base.items():
        for key in service.get("environment") or {}:
            if SECRET_KEY.search(key):
                assert key in (prod.get(name, {}).get("environment") or {}), f"{name}.{key}"


@pytest.mark.parametrize(
    "service", [*SERVICE_PORTS, *(f"{s}-migrate" for s in SERVICE_PORTS if s != "gateway")]
)
def test_production_runs_the_services_in_production_mode(service):
    environment = load_yaml(COMPOSE_PROD)["services"][service]["environment"]
    assert environment["ENVIRONMENT"] == "production"


def test_production_long_running_services_restart_and_are_limited():
    base = load_yaml(COMPOSE)["services"]
    prod = load_yaml(COMPOSE_PROD)["services"]
    for name in set(base) - one_shot_jobs(base):
        service = prod.get(name, {})
        assert service.get("restart") == "unless-stopped", name
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name} has no resource limits"


def test_production_signing_key_is_a_docker_secret():
    prod = load_yaml(COMPOSE_PROD)
    assert "file" in prod["secrets"]["auth_signing_key"]
    for name in ("auth", "auth-signing-key"):
        service = prod["services"][name]
        assert "auth_signing_key" in service["secrets"], name
        assert service["environment"]["AUTH_SIGNING_KEY_FILE"] == "/run/secrets/auth_signing_key"


PGBACKREST = REPO / "infrastructure" / "pgbackrest"
DATABASES = ("auth", "vehicle", "location", "notification")


def postgres_settings(lines: list[str]) -> dict[str, str]:
    """`name = value` lines (postgresql.conf) or `name=value` ones (-c), quotes dropped."""
    settings = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip().strip("'")
    return settings


def pgbackrest_global() -> dict[str, str]:
    section, options = None, {}
    for line in (PGBACKREST / "pgbackrest.conf").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "global" and "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options[name] = value
    return options


@pytest.mark.parametrize("service", DATABASES)
def test_production_databases_archive_wal_as_the_recovery_test_does(service):
    """The settings, the pgBackRest configuration and the repository tests/recovery/test_pitr.py
    restores from, in each production PostgreSQL container (one stanza per server)."""
    base = load_yaml(COMPOSE)["services"][f"{service}-db"]
    db = load_yaml(COMPOSE_PROD)["services"][f"{service}-db"]
    command = db["command"]
    assert command[0] == "postgres"
    assert command[1::2] == ["-c"] * (len(command) // 2)
    archiving = postgres_settings(
        (PGBACKREST / "postgresql-archiving.conf").read_text().splitlines()
    )
    archiving["archive_command"] = archiving["archive_command"].replace(
        "--stanza=fleet", f"--stanza={service}"
    )
    assert postgres_settings(command[2::2]) == archiving
    assert int(archiving["archive_timeout"].removesuffix("s")) <= 15 * 60, "the 15-minute RPO"
    # The image is the base file's PostgreSQL (PostGIS for location) with pgBackRest added.
    assert db["build"] == {
        "context": "./infrastructure/postgres",
        "args": {"BASE_IMAGE": base["image"]},
    }
    assert db["image"] != base["image"], "the built image must not take the upstream tag"
    # pgBackRest reads the shipped file; the stanza's server is the image's data directory.
    environment = db["environment"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in db["volumes"]}
    assert mounts[environment["PGBACKREST_CONFIG"]] == "./infrastructure/pgbackrest/pgbackrest.conf"
    (data_volume,) = base["volumes"]
    assert environment["PGBACKREST_PG1_PATH"] == data_volume.split(":")[1]
    # One repository for the four stanzas, on a named volume, where the file says it is.
    repository = pgbackrest_global()["repo1-path"]
    assert mounts[repository] == "pgbackrest-repo"
    assert "pgbackrest-repo" in load_yaml(COMPOSE_PROD)["volumes"]
    # The image makes the directories the configuration uses (the spool of archive-async).
    dockerfile = (REPO / "infrastructure" / "postgres" / "Dockerfile").read_text()
    assert pgbackrest_global()["spool-path"] in dockerfile
    assert repository in dockerfile


# --- Mosquitto -----------------------------------------------------------------------------


def mosquitto_options(path: Path = MOSQUITTO_DIR / "mosquitto.conf") -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


def test_mosquitto_requires_authentication_and_persists():
    options = mosquitto_options()
    assert options["allow_anonymous"] == ["false"]
    assert options["persistence"] == ["true"]
    assert options["plugin"] == ["/usr/lib/mosquitto_dynamic_security.so"]
    assert options["plugin_opt_config_file"] == ["/mosquitto/data/dynamic-security.json"]
    assert options["persistence_location"] == ["/mosquitto/data/"]


def test_mosquitto_data_is_on_a_volume_shared_with_its_init_job():
    services = load_yaml(COMPOSE)["services"]
    for name in ("mosquitto", "mosquitto-init"):
        assert "mosquitto-data:/mosquitto/data" in services[name]["volumes"], name
    assert services["mosquitto"]["depends_on"]["mosquitto-init"] == {
        "condition": "service_completed_successfully"
    }
    assert services["location"]["depends_on"]["mosquitto-provision"] == {
        "condition": "service_completed_successfully"
    }


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_passes(script):
    result = run(tool("shellcheck"), str(script))
    assert result.returncode == 0, result.stdout + result.stderr


def dynsec_plugin() -> str | None:
    for pattern in (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
    ):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    return None


@pytest.fixture
def broker_dir():
    # Readable by the `mosquitto` user, to whom the broker drops when started as root.
    path = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


needs_mosquitto = pytest.mark.skipif(
    not (shutil.which("mosquitto") and shutil.which("mosquitto_ctrl") and dynsec_plugin()),
    reason="needs Mosquitto with its dynamic-security plugin (make bootstrap installs it)",
)


@needs_mosquitto
def test_broker_setup_scripts_against_a_real_mosquitto(broker_dir):
    """The project's mosquitto.conf, init-dynsec.sh and provision-clients.sh, run for real."""
    port = free_port()
    data_dir = broker_dir / "data"
    data_dir.mkdir()
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    conf = conf.replace("/usr/lib/mosquitto_dynamic_security.so", dynsec_plugin())
    conf = conf.replace("/mosquitto/data/", f"{data_dir}/")
    conf = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    (broker_dir / "mosquitto.conf").write_text(conf)
    env = {
        **os.environ,
        "DYNSEC_FILE": str(data_dir / "dynamic-security.json"),
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(port),
        "VEHICLE_MQTT_ADMIN_USERNAME": "fleet-admin",
        "VEHICLE_MQTT_ADMIN_PASSWORD": "admin-test-password",
        "LOCATION_MQTT_USERNAME": "fleet-location",
        "LOCATION_MQTT_PASSWORD": "location-test-password",
    }

    init = run("sh", str(MOSQUITTO_DIR / "init-dynsec.sh"), env=env)
    assert init.returncode == 0, init.stderr
    if os.geteuid() == 0:
        shutil.chown(data_dir, "mosquitto", "mosquitto")
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(broker_dir / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert broker.poll() is None, broker.stdout.read()
            assert time.monotonic() < deadline, "broker did not listen"
            time.sleep(0.1)

        for attempt in ("first", "again"):  # converges: a re-run changes nothing and passes
            provision = run("sh", str(MOSQUITTO_DIR / "provision-clients.sh"), env=env)
            assert provision.returncode == 0, f"{attempt}: {provision.stdout}{provision.stderr}"

        subscribe = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "5", "-E"]
        shared = ["-t", "$share/location/fleet/+/telemetry"]
        anonymous = run(*subscribe, *shared)
        assert anonymous.returncode != 0, "anonymous clients must be refused"
        location = run(*subscribe, "-u", "fleet-location", "-P", "location-test-password", *shared)
        assert location.returncode == 0, location.stderr
        assert "denied" not in location.stderr

        # The init job leaves an existing file alone: it holds every device's credentials.
        before = Path(env["DYNSEC_FILE"]).read_bytes()
        again = run("sh", str(MOSQUITTO_DIR / "init-dynsec.sh"), env=env)
        assert again.returncode == 0
        assert "exists" in again.stdout
        assert Path(env["DYNSEC_FILE"]).read_bytes() == before
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def test_broker_provisioning_fails_when_the_broker_refuses(tmp_path):
    if not shutil.which("mosquitto_ctrl"):
        pytest.skip("needs mosquitto_ctrl and mosquitto_sub (make bootstrap installs them)")
    env = {
        **os.environ,
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(free_port()),  # nothing listens here
        "VEHICLE_MQTT_ADMIN_USERNAME": "fleet-admin",
        "VEHICLE_MQTT_ADMIN_PASSWORD": "x",
        "LOCATION_MQTT_USERNAME": "fleet-location",
        "LOCATION_MQTT_PASSWORD": "y",
    }
    result = run("sh", str(MOSQUITTO_DIR / "provision-clients.sh"), env=env, timeout=60)
    assert result.returncode != 0


# --- the broker's queue for the location service ------------------------------------------

QUEUE_OPTIONS = (
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "autosave_interval",
)
# More than the count limit the broker had before (max_queued_messages 100000).
OFFLINE_MESSAGES = 120_000


@needs_mosquitto
def test_the_devstack_broker_queues_like_the_shipped_one(tmp_path):
    generated = mosquitto_options(Mosquitto(tmp_path, free_port(), "a", "b")._write_config())
    shipped = mosquitto_options()
    for option in QUEUE_OPTIONS:
        assert generated.get(option) == shipped.get(option), option
    # No count limit: a memory bound only (see the next test).
    assert shipped["max_queued_messages"] == ["0"]
    assert int(shipped["max_queued_bytes"][0]) > 0


def remaining_length(length: int) -> bytes:
    """MQTT's variable byte integer."""
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def mqtt_string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def compose_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", value.lower()).groups()
    return int(number) * 1024 ** ("kmg".index(unit) + 1 if unit else 0)


@needs_mosquitto
def test_an_offline_location_session_gets_every_position_past_the_old_count_limit(broker_dir):
    """A devstack broker (the generated config) keeps OFFLINE_MESSAGES QoS 1 positions for an
    offline location session and delivers them all; and, from the broker's memory per queued
    position, the location sessions of the compose file fit the broker's memory limit when
    each is full to max_queued_bytes."""
    broker = Mosquitto(broker_dir / "broker", free_port(), "admin-password", "ingest-password")
    broker.start()
    try:
        broker.ctrl("createRole", "device")
        broker.ctrl("addRoleACL", "device", "publishClientSend", "fleet/+/telemetry", "allow")
        broker.ctrl("createClient", "device-1", "-p", "device-password")
        broker.ctrl("addClientRole", "device-1", "device")

        received: list[bytes] = []
        subscribed = threading.Event()
        all_received = threading.Event()

        def on_messages(messages) -> None:
            received.extend(message.payload for message in messages)
            consumer.ack_many(message.mid for message in messages)
            if len(received) >= OFFLINE_MESSAGES:
                all_received.set()

        # The location service's session: MQTT 5, clean_start=False, a session expiry.
        consumer = BufferedClient(
            CallbackAPIVersion.VERSION2,
            on_messages=on_messages,
            client_id="fleet-location-test-0",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        consumer.username_pw_set(broker.ingest_username, "ingest-password")
        consumer.on_subscribe = lambda *_args: subscribed.set()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 4000
        consumer.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
        consumer.loop_start()
        consumer.subscribe("$share/location/fleet/+/telemetry", qos=1)
        assert subscribed.wait(10)
        consumer.disconnect()
        consumer.loop_stop()

        # A device publishes while the session is offline (raw packets: paho would take longer
        # than the broker); every PUBACK means the broker has taken responsibility.
        payloads = [
            json.dumps(  # the simulator's position (fleet_location.sim), numbered by its ts
                {
                    "ts": f"2025-01-01T12:00:00.{i:06d}Z",
                    "lat": 52.5200066,
                    "lon": 13.404954,
                    "speed": 48.3,
                    "heading": 271.5,
                    "ignition": True,
                    "battery": 87.5,
                    "odometer": 12345.678,
                }
            ).encode()
            for i in range(OFFLINE_MESSAGES)
        ]
        topic = mqtt_string(b"fleet/device-1/telemetry")
        rss_before = rss_bytes(int(broker.pidfile.read_text()))
        with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as device:
            body = (
                mqtt_string(b"MQTT")
                + bytes([4, 0xC2])  # 3.1.1; username, password, clean session
                + (60).to_bytes(2, "big")
                + mqtt_string(b"device-1")
                + mqtt_string(b"device-1")
                + mqtt_string(b"device-password")
            )
            device.sendall(b"\x10" + remaining_length(len(body)) + body)
            assert device.recv(4) == b"\x20\x02\x00\x00", "the device was refused"
            packets = bytearray()
            for i, payload in enumerate(payloads):
                variable = topic + (i % 65535 + 1).to_bytes(2, "big")
                packets += b"\x32" + remaining_length(len(variable) + len(payload))
                packets += variable + payload
            device.sendall(packets)
            acknowledged = 0
            while acknowledged < 4 * OFFLINE_MESSAGES:
                chunk = device.recv(1 << 20)
                assert chunk, "the broker closed the device's connection"
                acknowledged += len(chunk)
        per_position = (rss_bytes(int(broker.pidfile.read_text())) - rss_before) / len(payloads)

        consumer.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
        consumer.loop_start()
        try:
            all_received.wait(30)
        finally:
            consumer.disconnect()
            consumer.loop_stop()
        assert len(received) == OFFLINE_MESSAGES
        assert set(received) == set(payloads)
    finally:
        broker.stop()

    # Memory: each location worker has a session (WEB_CONCURRENCY, one location container),
    # and each may fill up to max_queued_bytes of payload; a quarter of the broker's limit is
    # left for everything else (device connections, retained messages, another session).
    payload_bytes = sum(map(len, payloads)) / len(payloads)
    full_session = int(mosquitto_options()["max_queued_bytes"][0]) / payload_bytes * per_position
    workers = load_yaml(COMPOSE)["services"]["location"]["environment"]["WEB_CONCURRENCY"]
    sessions = int(re.fullmatch(r"\$\{WEB_CONCURRENCY:-(\d+)\}", workers).group(1))
    limit = load_yaml(COMPOSE_PROD)["services"]["mosquitto"]["deploy"]["resources"]["limits"]
    assert sessions * full_session <= 0.75 * compose_bytes(limit["memory"]), (
        f"{per_position:.0f} bytes per queued position of {payload_bytes:.0f} bytes"
    )


# --- prestart script and gunicorn settings -------------------------------------------------

STUB_APP = """
from fleet_common.app import create_service_app
from fleet_common.settings import CommonSettings


def create_app():
    return create_service_app(service="stub", settings=CommonSettings(), verify_tokens=False)
"""


def image_healthcheck(port: int) -> list[str]:
    """The gateway image's HEALTHCHECK command, pointed at `port`."""
    (healthcheck,) = [a for k, a in instructions(DOCKERFILES["gateway"]) if k == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    return [
        sys.executable if part == "python" else part.replace(":8000/", f":{port}/")
        for part in command
    ]


def test_prestart_migrates_then_serves_with_the_image_gunicorn_settings(tmp_path):
    """prestart.sh + gunicorn.conf.py as the image runs them, with a stub fleet_common app."""
    (tmp_path / "stubapp.py").write_text(STUB_APP)
    workdir = tmp_path / "app"
    workdir.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stands in for alembic: records where and with what it ran.
    fake_alembic = bin_dir / "alembic"
    fake_alembic.write_text('#!/bin/sh\necho "$PWD $*" >> "$ALEMBIC_LOG"\n')
    fake_alembic.chmod(0o755)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by a previous run")

    port = free_port()
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin:/bin"]),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Unwritable, as in the image: gunicorn must not try to put a control socket there.
        "HOME": "/nonexistent",
        "WEB_CONCURRENCY": "2",
        "RUN_MIGRATIONS": "1",
        "ALEMBIC_LOG": str(tmp_path / "alembic.log"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    command = [
        "sh",
        str(DOCKER_DIR / "prestart.sh"),
        "gunicorn",
        "--config",
        str(DOCKER_DIR / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--pythonpath",
        str(tmp_path),
        "stubapp:create_app()",
    ]
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while run(*image_healthcheck(port)).returncode != 0:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        assert (tmp_path / "alembic.log").read_text() == f"{workdir} upgrade head\n"
        assert not (metrics_dir / "counter_999999.db").exists(), "stale samples were kept"

        # Which worker accepts a connection is the kernel's choice, and on a busy machine one
        # worker can take a long run of them: send concurrent requests until both have served.
        sent = 0
        pids: set[str] = set()
        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                for response in pool.map(
                    lambda _: httpx.get(f"http://127.0.0.1:{port}/health/liveness", timeout=5),
                    range(16),
                ):
                    response.raise_for_status()
                sent += 16
                pids = {p.name.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids) == 2, f"expected 2 workers, got {sorted(pids)}"
        # Samples of both workers, summed: whichever worker answers reports all requests.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).content
        served = re.search(
            rb'http_requests_total\{method="GET",route="/health/liveness",'
            rb'service="stub",status_code="200"\} (\d+)',
            metrics,
        )
        assert served is not None, metrics.decode()
        assert int(float(served.group(1))) >= sent + 1, metrics.decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "control socket" not in log_path.read_text().lower(), log_path.read_text()


def test_prestart_does_not_migrate_by_default(tmp_path):
    env = {
        **os.environ,
        "PATH": "/usr/bin:/bin",  # no alembic: calling it would fail
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    env.pop("RUN_MIGRATIONS", None)
    result = run("sh", str(DOCKER_DIR / "prestart.sh"), "echo", "served", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "served\n"
    assert (tmp_path / "prometheus").is_dir()


def test_prestart_stops_when_migrations_fail(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "alembic").write_text("#!/bin/sh\nexit 3\n")
    (bin_dir / "alembic").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "RUN_MIGRATIONS": "1",
    }
    result = run("sh", str(DOCKER_DIR / "prestart.sh"), "echo", "served", env=env)
    assert result.returncode == 3
    assert "served" not in result.stdout


# --- signing key one-shot ------------------------------------------------------------------


def ensure_signing_key(path: Path, environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTH_SIGNING_KEY_FILE": str(path), "ENVIRONMENT": environment}
    return run(sys.executable, str(DOCKER_DIR / "ensure_signing_key.py"), env=env)


def test_signing_key_is_generated_once_in_development(tmp_path):
    key = tmp_path / "keys" / "signing-key.pem"
    assert ensure_signing_key(key, "development").returncode == 0
    first = key.read_bytes()
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert ensure_signing_key(key, "development").returncode == 0
    assert key.read_bytes() == first, "an existing key is kept"


def test_signing_key_is_never_generated_in_production(tmp_path):
    key = tmp_path / "signing-key.pem"
    result = ensure_signing_key(key, "production")
    assert result.returncode == 1
    assert "secret" in result.stderr
    assert not key.exists()


def test_signing_key_that_is_not_a_key_is_refused(tmp_path):
    key = tmp_path / "signing-key.pem"
    key.write_text("not a key\n")
    assert ensure_signing_key(key, "production").returncode == 1


# --- CI workflow ---------------------------------------------------------------------------


def test_workflow_runs_the_tests_ruff_and_the_docker_checks():
    steps = [
        step.get("run", "") for job in load_yaml(WORKFLOW)["jobs"].values() for step in job["steps"]
    ]
    commands = "\n".join(steps)
    assert "make test" in commands
    assert "ruff check" in commands
    assert "ruff format --check" in commands
    assert "hadolint" in commands
    assert "vendor.compose-spec" in commands
    assert "docker compose build" in commands


def test_workflow_passes_actionlint():
    # actionlint checks expressions, job references and, with shellcheck on PATH, every `run:`.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = run(tool("actionlint"), "-no-color", str(WORKFLOW), env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_pipeline():
    assert sorted(p.name for p in WORKFLOW.parent.iterdir()) == ["ci-cd.yml"]


def test_workflow_builds_every_image_with_buildx_and_pushes_the_three_tags():
    workflow = load_yaml(WORKFLOW)
    # PyYAML reads the bare key `on` as True.
    triggers = workflow[True]
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert "pull_request" in triggers
    images = workflow["jobs"]["images"]
    assert set(images["needs"]) == {"test", "docker"}
    assert images["permissions"]["packages"] == "write"
    matrix = {entry["image"]: entry for entry in images["strategy"]["matrix"]["include"]}
    assert set(matrix) == {*SERVICE_PORTS, "frontend", "mosquitto"}
    for name in SERVICE_PORTS:
        assert matrix[name]["dockerfile"] == f"services/{name}/Dockerfile"
        assert matrix[name]["context"] == "."
    uses = {step.get("uses", "").split("@")[0]: step for step in images["steps"]}
    assert "docker/setup-buildx-action" in uses
    tags = uses["docker/metadata-action"]["with"]["tags"].split()
    assert "type=sha,format=long,prefix=" in tags
    assert "type=raw,value=latest,enable={{is_default_branch}}" in tags
    assert "type=semver,pattern={{version}}" in tags
    build = uses["docker/build-push-action"]["with"]
    assert build["push"] is True
    assert build["cache-from"].startswith("type=gha")
    assert build["cache-to"].startswith("type=gha")


def test_workflow_deploys_staging_from_main_and_production_from_tags_after_approval():
    jobs = load_yaml(WORKFLOW)["jobs"]
    staging, production = jobs["deploy-staging"], jobs["deploy-production"]
    assert staging["needs"] == production["needs"] == "images"
    assert "github.ref == 'refs/heads/main'" in staging["if"]
    assert "startsWith(github.ref, 'refs/tags/v')" in production["if"]
    assert staging["environment"]["name"] == "staging"
    # Required reviewers are a property of this environment (repository settings).
    assert production["environment"]["name"] == "production"
    for job, overlay in ((staging, "staging"), (production, "production")):
        (deploy,) = [step["run"] for step in job["steps"] if step.get("name") == "Deploy"]
        assert deploy.startswith(f'infrastructure/scripts/k8s-deploy.sh {overlay} "$GITHUB_SHA"')
        assert job["concurrency"]["cancel-in-progress"] is False


def test_urllib_healthcheck_fails_when_nothing_listens():
    # The image's health check must report failure, not hang or pass, when the port is closed.
    result = run(*image_healthcheck(free_port()), timeout=30)
    assert result.returncode != 0
    assert "URLError" in result.stderr or "Connection refused" in result.stderr
