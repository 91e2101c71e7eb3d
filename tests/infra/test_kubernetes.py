"""The Kubernetes manifests (kubernetes/): rendered by kustomize as the pipeline renders them,
validated against the Kubernetes schemas, then held to the deployment's rules.

Nothing here needs a cluster: `kubectl kustomize` renders, kubernetes-validate checks every
object against the API's schemas (strict: an unknown or misspelt field fails), and the tests
below check what a schema cannot: probes, limits and hardening on every container, an HPA and a
PDB for every workload, the environment each service reads and nothing else, secrets only by
reference, images only from kustomize, and who may reach whom under the NetworkPolicies.
"""

import copy
import importlib
import ipaddress
import json
import re
import runpy
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "kubernetes"
OVERLAYS = {"staging": "staging", "production": "prod"}
# The newest Kubernetes release kubernetes-validate ships schemas for (its version follows it):
# a field removed or renamed upstream fails here first.
KUBERNETES_VERSION = "1.37.0"
IMAGE_REPOSITORY = "ghcr.io/fleet-tracker/fleet-tracker"

BACKENDS = {"gateway": 8000, "auth": 8001, "vehicle": 8002, "location": 8003, "notification": 8004}
APPS = {**BACKENDS, "frontend": 8080}
DATABASE_SERVICES = ("auth", "vehicle", "location", "notification")
# One-replica stateful parts: neither scaled by an HPA nor guarded by a PDB (one would block
# every node drain); docs/deploy.md says why. Production runs only the broker in the cluster.
SINGLETONS = {"staging": {"postgres", "redis", "mosquitto"}, "production": {"mosquitto"}}

# What each service must be given in a cluster to work there at all (the rest has defaults).
REQUIRED_ENV = {
    "common": {
        "ENVIRONMENT",
        "REDIS_URL",
        "AUTH_JWKS_URL",
        "JWT_ISSUER",
        "INTERNAL_SERVICE_TOKEN",
        "DRAIN_FILE",
    },
    "gateway": {
        "GATEWAY_AUTH_URL",
        "GATEWAY_VEHICLE_URL",
        "GATEWAY_LOCATION_URL",
        "GATEWAY_NOTIFICATION_URL",
        "GATEWAY_CORS_ORIGINS",
        "GATEWAY_TRUSTED_PROXIES",
    },
    "auth": {
        "AUTH_DATABASE_URL",
        "DATABASE_PGBOUNCER",
        "AUTH_SIGNING_KEY_FILE",
        "AUTH_TRUSTED_PROXIES",
    },
    "vehicle": {
        "VEHICLE_DATABASE_URL",
        "DATABASE_PGBOUNCER",
        "MQTT_HOST",
        "MQTT_PORT",
        "VEHICLE_MQTT_ADMIN_USERNAME",
        "VEHICLE_MQTT_ADMIN_PASSWORD",
        "VEHICLE_MQTT_PUBLIC_HOST",
        "VEHICLE_MQTT_PUBLIC_PORT",
    },
    "location": {
        "LOCATION_DATABASE_URL",
        "DATABASE_PGBOUNCER",
        "MQTT_HOST",
        "MQTT_PORT",
        "LOCATION_MQTT_USERNAME",
        "LOCATION_MQTT_PASSWORD",
        "LOCATION_MQTT_CLIENT_ID",
        "LOCATION_VEHICLE_URL",
    },
    "notification": {
        "NOTIFICATION_DATABASE_URL",
        "DATABASE_PGBOUNCER",
        "NOTIFICATION_SMTP_PASSWORD",
    },
}
# Read by the image rather than by the service's settings (gunicorn.conf.py and gunicorn).
IMAGE_ENV = {"WEB_CONCURRENCY"}
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|DATABASE_URL$|REDIS_URL$|REDISCLI_AUTH$")
# A value that looks like a credential: a URL with a password, a key, a token-like string.
SECRET_VALUE = re.compile(r"://[^/\s:@]*:[^@\s]+@|-----BEGIN|\b[A-Za-z0-9+/=_-]{40,}\b")


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    if found is None:
        pytest.fail(f"{name} is not installed: `uv sync --all-packages` (or apt, for kubectl)")
    return found


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


@cache
def rendered_text(target: str) -> str:
    path = KUBERNETES / ("base" if target == "base" else f"overlays/{target}")
    result = run(tool("kubectl"), "kustomize", str(path))
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def rendered(target: str) -> tuple[dict, ...]:
    return tuple(doc for doc in yaml.safe_load_all(rendered_text(target)) if doc)


def objects(target: str, *kinds: str) -> list[dict]:
    return [o for o in rendered(target) if o["kind"] in kinds]


def one(target: str, kind: str, name: str) -> dict:
    (found,) = [o for o in objects(target, kind) if o["metadata"]["name"] == name]
    return found


def workloads(target: str) -> list[dict]:
    return objects(target, "Deployment", "StatefulSet")


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def name_of(o: dict) -> str:
    return o["metadata"]["name"]


targets = pytest.mark.parametrize("target", list(OVERLAYS))


# --- rendering and schemas ---------------------------------------------------------------------


def test_base_renders_on_its_own():
    # Every base object is in both overlays, which are validated below (each validation run
    # costs some 15 s of CPU).
    kinds = {o["kind"] for o in rendered("base")}
    assert {"Deployment", "StatefulSet", "Job", "Ingress", "NetworkPolicy"} <= kinds
    assert {o["metadata"].get("namespace") for o in rendered("base")} == {None}


@targets
def test_renders_and_matches_the_kubernetes_schemas(target, tmp_path):
    manifest = tmp_path / f"{target}.yaml"
    manifest.write_text(rendered_text(target))
    result = run(
        tool("kubernetes-validate"),
        "--strict",
        "--quiet",
        "--kubernetes-version",
        KUBERNETES_VERSION,
        str(manifest),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(rendered(target)) >= 60


def test_the_schema_check_catches_a_misspelt_field(tmp_path):
    deployment = copy.deepcopy(one("staging", "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(manifest))
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


@targets
def test_overlay_sets_its_namespace_on_every_object(target):
    assert {o["metadata"].get("namespace") for o in rendered(target)} == {OVERLAYS[target]}


def test_base_files_hold_one_object_each_named_after_it():
    kinds = {
        "Deployment": "deployment",
        "StatefulSet": "statefulset",
        "Service": "service",
        "ConfigMap": "configmap",
        "Job": "job",
        "PodDisruptionBudget": "poddisruptionbudget",
        "HorizontalPodAutoscaler": "horizontalpodautoscaler",
        "NetworkPolicy": "networkpolicy",
        "Ingress": "ingress",
    }
    listed = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())["resources"]
    files = sorted(p.name for p in (KUBERNETES / "base").glob("*.yaml"))
    assert sorted(listed) == [f for f in files if f != "kustomization.yaml"]
    for name in listed:
        (document,) = [d for d in yaml.safe_load_all((KUBERNETES / "base" / name).read_text())]
        assert name == f"{name_of(document)}-{kinds[document['kind']]}.yaml"


# --- workloads ---------------------------------------------------------------------------------


@targets
def test_every_container_has_probes_resources_and_a_locked_down_context(target):
    for workload in workloads(target):
        pod = workload["spec"]["template"]["spec"]
        where = name_of(workload)
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] > 0, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(workload):
            where = f"{name_of(workload)}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            if container in pod["containers"]:
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in container, f"{where} has no {probe}"


@targets
@pytest.mark.parametrize("service", BACKENDS)
def test_service_probes_its_health_endpoints(target, service):
    workload = next(w for w in workloads(target) if name_of(w) == service)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/liveness"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == BACKENDS[service]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


@targets
def test_deployments_surge_before_they_take_a_pod_away(target):
    for workload in objects(target, "Deployment"):
        assert workload["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }, name_of(workload)


def gunicorn_settings() -> dict:
    return runpy.run_path(str(REPO / "infrastructure/docker/gunicorn.conf.py"))


def gunicorn_graceful_timeout_s() -> int:
    return gunicorn_settings()["graceful_timeout"]


# The services' preStop hook: the drain (fleet_common.drain), then the pause.
DRAIN_PRE_STOP = re.compile(r'touch "\$DRAIN_FILE" && sleep (\d+)')


def pre_stop_pause_s(workload: dict) -> int:
    """The seconds a workload's preStop hook keeps it serving before SIGTERM."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    if name_of(workload) in BACKENDS:
        assert command[:2] == ["sh", "-c"], name_of(workload)
        drain = DRAIN_PRE_STOP.fullmatch(command[2])
        assert drain, f"{name_of(workload)} does not drain before it stops: {command}"
        return int(drain[1])
    assert command[0] == "sleep", name_of(workload)
    return int(command[1])


@targets
def test_grace_period_covers_the_pre_stop_pause_and_the_graceful_shutdown(target):
    graceful_s = gunicorn_graceful_timeout_s()
    for workload in workloads(target):
        if name_of(workload) in SINGLETONS["staging"]:
            continue
        pod = workload["spec"]["template"]["spec"]
        pause_s = pre_stop_pause_s(workload)
        assert pause_s >= 3, "endpoint removal needs a moment to reach every proxy"
        shutdown_s = graceful_s if name_of(workload) in BACKENDS else 10
        # Some seconds beyond both: the lifespan's own shutdown after gunicorn stops waiting.
        assert pod["terminationGracePeriodSeconds"] >= pause_s + shutdown_s + 5, name_of(workload)


@targets
def test_every_workload_but_the_stateful_singletons_has_an_hpa_and_a_pdb(target):
    hpas = {
        (o["spec"]["scaleTargetRef"]["kind"], o["spec"]["scaleTargetRef"]["name"]): o
        for o in objects(target, "HorizontalPodAutoscaler")
    }
    pdbs = {
        o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: o
        for o in objects(target, "PodDisruptionBudget")
    }
    scaled = set()
    for workload in workloads(target):
        name = name_of(workload)
        if name in SINGLETONS[target]:
            assert workload["spec"]["replicas"] == 1
            continue
        hpa = hpas[(workload["kind"], name)]
        assert hpa["apiVersion"] == "autoscaling/v2"
        targets_ = {
            m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
            for m in hpa["spec"]["metrics"]
        }
        assert targets_ == {"cpu": 70, "memory": 80}, name
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        assert pdbs[name]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        }
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
        scaled.add(name)
    assert set(APPS) | {f"{s}-pgbouncer" for s in DATABASE_SERVICES} == scaled
    assert {o["metadata"]["name"] for o in workloads(target)} - scaled == SINGLETONS[target]


@targets
def test_location_is_a_statefulset_whose_pod_name_is_its_mqtt_client_id(target):
    location = one(target, "StatefulSet", "location")
    assert location["spec"]["serviceName"] == "location-pods"
    assert one(target, "Service", "location-pods")["spec"]["clusterIP"] == "None"
    (container,) = location["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LOCATION_MQTT_CLIENT_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    # The name of the setting is the service's own.
    settings_class = importlib.import_module("fleet_location.config").Settings
    assert "LOCATION_MQTT_CLIENT_ID" in env_names(settings_class)


@targets
def test_trackers_and_devices_reach_their_listeners_through_load_balancers(target):
    trackers = one(target, "Service", "location-trackers")["spec"]
    assert trackers["type"] == "LoadBalancer"
    assert {p["port"] for p in trackers["ports"]} == {5027, 5023}
    devices = one(target, "Service", "mosquitto-devices")["spec"]
    assert devices["type"] == "LoadBalancer"
    assert [p["port"] for p in devices["ports"]] == [8883]
    conf = one(target, "ConfigMap", "mosquitto")["data"]["mosquitto.conf"]
    after_tls = conf.split("listener 8883", 1)[1]
    assert "certfile /etc/fleet/mosquitto/tls/tls.crt" in after_tls.split("listener", 1)[0]


# --- settings and secrets ----------------------------------------------------------------------


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    """The variables a pydantic-settings class reads (as tests/test_env_example.py finds them)."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


def provided_env(target: str, container: dict) -> dict[str, dict]:
    """Each variable the container gets: from `env`, and every key of its envFrom ConfigMaps."""
    provided = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "Secrets are referenced key by key"
        config_map = one(target, "ConfigMap", source["configMapRef"]["name"])
        provided |= {key: {"configMap": value} for key, value in config_map["data"].items()}
    for entry in container.get("env", []):
        assert entry["name"] not in provided, f"{entry['name']} given twice"
        provided[entry["name"]] = entry
    return provided


@targets
@pytest.mark.parametrize("service", BACKENDS)
def test_service_gets_every_variable_it_needs_and_none_it_does_not_read(target, service):
    settings_class = importlib.import_module(f"fleet_{service}.config").Settings
    workload = next(w for w in workloads(target) if name_of(w) == service)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    provided = provided_env(target, container)
    missing = (REQUIRED_ENV["common"] | REQUIRED_ENV[service]) - set(provided)
    assert not missing, f"{service} lacks {sorted(missing)}"
    unread = set(provided) - env_names(settings_class) - IMAGE_ENV
    assert not unread, f"{service} does not read {sorted(unread)}"
    assert provided["ENVIRONMENT"] == {"configMap": "production"}
    if service in DATABASE_SERVICES:
        assert provided["DATABASE_PGBOUNCER"] == {"configMap": "true"}


def test_frontend_gets_no_settings_or_secrets():
    frontend = one("production", "Deployment", "frontend")
    (container,) = frontend["spec"]["template"]["spec"]["containers"]
    assert "env" not in container
    assert "envFrom" not in container


@targets
def test_secrets_come_by_reference_only(target):
    assert not objects(target, "Secret"), "Secrets are created outside the repository"
    for config_map in objects(target, "ConfigMap"):
        for key, value in config_map["data"].items():
            where = f"{name_of(config_map)}.{key}"
            if not key.endswith((".sh", ".conf", ".ini")):
                assert not SECRET_NAME.search(key), where
            assert not SECRET_VALUE.search(value), where
    for workload in [*workloads(target), *objects(target, "Job")]:
        for container in (
            containers(workload)
            if workload["kind"] != "Job"
            else (workload["spec"]["template"]["spec"]["containers"])
        ):
            for entry in container.get("env", []):
                where = f"{name_of(workload)}/{entry['name']}"
                if SECRET_NAME.search(entry["name"]):
                    assert set(entry) == {"name", "valueFrom"}, where
                    assert "secretKeyRef" in entry["valueFrom"], where
                if "value" in entry:
                    assert not SECRET_VALUE.search(entry["value"]), where


# --- images and migrations ---------------------------------------------------------------------


def overlay_tags(target: str) -> dict[str, str]:
    path = KUBERNETES / "overlays" / target / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    return {image["name"]: image["newTag"] for image in kustomization["images"]}


@targets
def test_images_come_from_kustomize(target):
    tags = overlay_tags(target)
    # The apps, and the broker (eclipse-mosquitto with the restore step: docs/ingest-durability.md).
    assert set(tags) == {f"{IMAGE_REPOSITORY}/{app}" for app in [*APPS, "mosquitto"]}
    for workload in [*workloads(target), *objects(target, "Job")]:
        for container in containers(workload):
            repository, _, tag = container["image"].rpartition(":")
            assert tag, container["image"]
            if target == "production":
                assert tag != "latest", container["image"]
            if repository.startswith(f"{IMAGE_REPOSITORY}/"):
                assert tags[repository] == tag, container["image"]
            else:
                # Third-party images carry a fixed version.
                assert re.search(r"\d", tag), container["image"]
    text = "\n".join(
        p.read_text() for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert IMAGE_REPOSITORY not in text, "image names are set in kustomization.yaml only"
    if target == "production":
        assert "latest" not in tags.values()


@targets
@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_each_database_service_has_a_migration_job_with_its_image(target, service):
    job = one(target, "Job", f"{service}-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    workload = next(w for w in workloads(target) if name_of(w) == service)
    assert container["image"] == workload["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"] == ["alembic", "upgrade", "head"]
    assert "command" not in container, "the image's entry point (prestart) runs it"
    # fleet_common.migrations reads the URL alone; the Job connects past PgBouncer.
    assert container["env"] == [
        {
            "name": f"{service.upper()}_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": f"{service}-db", "key": "direct-url"}},
        }
    ]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@targets
@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_each_database_is_pooled_by_its_own_pgbouncer_in_transaction_mode(target, service):
    ini = one(target, "ConfigMap", f"{service}-pgbouncer")["data"]["pgbouncer.ini"]
    options = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in ini.splitlines())
        if value and not key.lstrip().startswith(";")
    )
    assert options["pool_mode"] == "transaction"
    assert int(options["max_prepared_statements"]) > 0, "asyncpg prepares every statement"
    assert options[f"{service}_db"] == f"host=postgres port=5432 dbname={service}_db"
    assert [k for k in options if k.endswith("_db")] == [f"{service}_db"]


@targets
def test_services_drain_longer_than_their_clients_keep_idle_connections(target):
    # A connection the client keeps idle past the drain would still be there at SIGTERM, where
    # uvicorn closes it, maybe under a request the client is sending (a 502 at the gateway).
    from fleet_common.drain import DRAIN_POLL_INTERVAL_S
    from fleet_common.http import UPSTREAM_KEEPALIVE_S

    drain_file = one(target, "ConfigMap", "fleet-common")["data"]["DRAIN_FILE"]
    assert drain_file.startswith("/tmp/"), "on the emptyDir every worker of the pod sees"
    for workload in workloads(target):
        if name_of(workload) in BACKENDS:
            pause_s = pre_stop_pause_s(workload)
            assert pause_s >= UPSTREAM_KEEPALIVE_S + DRAIN_POLL_INTERVAL_S + 1, name_of(workload)
    # And the servers keep an idle connection longer than their clients do, so they never
    # close one first (ingress-nginx keeps them 60 s in front of the gateway).
    assert gunicorn_settings()["keepalive"] > max(UPSTREAM_KEEPALIVE_S, 60)


def test_redis_cluster_is_turned_on_by_a_component_alone(tmp_path):
    for target in OVERLAYS:
        assert one(target, "ConfigMap", "fleet-common")["data"]["REDIS_CLUSTER"] == "false"
    overlay = tmp_path / "cluster"
    overlay.mkdir()
    relative = Path(*[".."] * len(overlay.parts[1:])) / KUBERNETES.relative_to("/")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(relative / "overlays/production")],
                "components": [str(relative / "components/redis-cluster")],
            }
        )
    )
    result = run(tool("kubectl"), "kustomize", str(overlay))
    assert result.returncode == 0, result.stderr
    with_cluster = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    settings = next(
        o for o in with_cluster if o["kind"] == "ConfigMap" and name_of(o) == "fleet-common"
    )
    assert settings["data"]["REDIS_CLUSTER"] == "true"
    # Every service reads it from there; nothing else changes.
    for workload in (o for o in with_cluster if o["kind"] in ("Deployment", "StatefulSet")):
        if name_of(workload) not in BACKENDS:
            continue
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": "fleet-common"}} in container["envFrom"]
    assert [o for o in with_cluster if o is not settings] == [
        o
        for o in rendered("production")
        if not (o["kind"] == "ConfigMap" and name_of(o) == "fleet-common")
    ]
    # The production overlay names the component, for an operator to uncomment.
    production = (KUBERNETES / "overlays/production/kustomization.yaml").read_text()
    assert "#   - ../../components/redis-cluster" in production


def test_production_replaces_postgres_and_redis_with_managed_services():
    postgres = one("production", "Service", "postgres")["spec"]
    assert postgres["type"] == "ExternalName"
    assert "selector" not in postgres
    names = {(o["kind"], name_of(o)) for o in rendered("production")}
    assert not {("StatefulSet", "postgres"), ("StatefulSet", "redis"), ("Service", "redis")} & names
    assert ("StatefulSet", "mosquitto") in names


def test_broker_setup_scripts_are_the_repositorys():
    data = one("staging", "ConfigMap", "mosquitto")["data"]
    for script in ("init-dynsec.sh", "provision-clients.sh"):
        assert data[script] == (REPO / "infrastructure" / "mosquitto" / script).read_text()

    def options(text: str) -> set[str]:
        return {
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        }

    repository = options((REPO / "infrastructure" / "mosquitto" / "mosquitto.conf").read_text())
    assert repository <= options(data["mosquitto.conf"]), "the cluster's broker config drifted"


# --- monitoring --------------------------------------------------------------------------------

PROMETHEUS_KUBERNETES = REPO / "infrastructure" / "monitoring" / "prometheus-kubernetes.yml"
PROMETHEUS_COMPOSE = REPO / "infrastructure" / "monitoring" / "prometheus.yml"


def meta_name(name: str) -> str:
    """A label or annotation name as Kubernetes discovery spells it in a meta label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def meta_labels(role: str, metadata: dict) -> dict[str, str]:
    """The name, namespace, labels and annotations of an object, as discovery gives them."""
    found = {
        "__meta_kubernetes_namespace": metadata["namespace"],
        f"__meta_kubernetes_{role}_name": metadata["name"],
    }
    for kind in ("label", "annotation"):
        for key, value in metadata.get(f"{kind}s", {}).items():
            found[f"__meta_kubernetes_{role}_{kind}_{meta_name(key)}"] = value
            found[f"__meta_kubernetes_{role}_{kind}present_{meta_name(key)}"] = "true"
    return found


def a_pod_name(workload: dict) -> str:
    """The name a pod of the workload gets: ordinal for a StatefulSet, hashes for a Deployment."""
    suffix = "0" if workload["kind"] == "StatefulSet" else "5d9f7c6b8-x2kqz"
    return f"{name_of(workload)}-{suffix}"


def discovered(pod_name: str, namespace: str, pod_ip: str, workload: dict, phase: str) -> list:
    """What Prometheus's pod discovery (role: pod) finds for a pod of this template: a target
    per declared container port, one without a port for a container that declares none, each
    with the pod's meta labels. As file-discovery groups, so that Prometheus relabels them."""
    template = workload["spec"]["template"]
    metadata = {**template["metadata"], "name": pod_name, "namespace": namespace}
    pod = meta_labels("pod", metadata) | {
        "__meta_kubernetes_pod_ip": pod_ip,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ready": str(phase == "Running").lower(),
        "__meta_kubernetes_pod_controller_kind": workload["kind"],
        "__meta_kubernetes_pod_controller_name": name_of(workload),
    }
    groups = []
    for container in template["spec"]["containers"]:
        labels = pod | {
            "__meta_kubernetes_pod_container_name": container["name"],
            "__meta_kubernetes_pod_container_image": container["image"],
            "__meta_kubernetes_pod_container_init": "false",
        }
        if not container.get("ports"):
            groups.append({"targets": [pod_ip], "labels": labels})
        for port in container.get("ports", []):
            groups.append(
                {
                    "targets": [f"{pod_ip}:{port['containerPort']}"],
                    "labels": labels
                    | {
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": port.get(
                            "protocol", "TCP"
                        ),
                    },
                }
            )
    return groups


def relabelled(job_name: str, role: str, groups: list, tmp_path: Path) -> list[dict]:
    """Prometheus's own relabelling of the groups with a shipped Kubernetes job: promtool check
    service-discovery runs it, with Kubernetes discovery swapped for file discovery (Debian's
    build has none, and there is no cluster here). The targets kept, with their labels."""
    config = yaml.safe_load(PROMETHEUS_KUBERNETES.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == job_name]
    assert job.pop("kubernetes_sd_configs") == [{"role": role}]
    (tmp_path / f"{job_name}.json").write_text(json.dumps(groups))
    job["file_sd_configs"] = [{"files": [str(tmp_path / f"{job_name}.json")]}]
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump({"global": config["global"], "scrape_configs": [job]})
    )
    result = run(
        tool("promtool"),
        "check",
        "service-discovery",
        "--timeout=1s",
        str(tmp_path / "prometheus.yml"),
        job_name,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert all(not target.get("error") for target in found), found
    return [target["labels"] for target in found if target["labels"]]


def scraped_targets(groups: list, tmp_path: Path) -> dict[str, set[frozenset]]:
    """The kubernetes-pods job's distinct targets by pod, as the scrape pool keeps them
    (identical targets are one)."""
    by_pod: dict[str, set[frozenset]] = {}
    for labels in relabelled("kubernetes-pods", "pod", groups, tmp_path):
        by_pod.setdefault(labels["pod"], set()).add(frozenset(labels.items()))
    return by_pod


@targets
def test_prometheus_pod_discovery_scrapes_every_service_and_nothing_else(target, tmp_path):
    namespace = OVERLAYS[target]
    groups, pod_ips = [], {}
    for number, workload in enumerate(workloads(target), start=2):
        pod_name = a_pod_name(workload)
        pod_ips[pod_name] = f"192.0.2.{number}"
        groups += discovered(pod_name, namespace, pod_ips[pod_name], workload, "Running")
        # A pod not yet running (or a finished one) is no target that is down.
        groups += discovered(f"{pod_name}-pending", namespace, "", workload, "Pending")
    scraped = scraped_targets(groups, tmp_path)

    compose_jobs = {
        j["job_name"] for j in yaml.safe_load(PROMETHEUS_COMPOSE.read_text())["scrape_configs"]
    }
    scrape = yaml.safe_load(PROMETHEUS_KUBERNETES.read_text())["global"]
    expected = {}
    for service, port in BACKENDS.items():
        workload = next(w for w in workloads(target) if name_of(w) == service)
        pod_name = a_pod_name(workload)
        expected[pod_name] = {
            frozenset(
                {
                    "__address__": f"{pod_ips[pod_name]}:{port}",
                    "__metrics_path__": "/metrics",
                    "__scheme__": "http",
                    "__scrape_interval__": scrape["scrape_interval"],
                    "__scrape_timeout__": scrape["scrape_timeout"],
                    "instance": f"{pod_name}:{port}",
                    # The job the rules match on, as in the compose configuration.
                    "job": service,
                    "namespace": namespace,
                    "pod": pod_name,
                }.items()
            )
        }
        assert service in compose_jobs
        # The port is the one serving the service (its /metrics), and the policies let the
        # monitoring namespace reach it.
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["http"] == port
        assert admitted(target, {"namespace": "monitoring"}, service, port), service
    assert scraped == expected


@targets
def test_prometheus_probes_the_certificate_of_every_tls_host(target, tmp_path):
    """Job tls: each Ingress host with TLS on 443 (ingress discovery: a target per rule path)
    and the broker's public MQTT host on 8883 (service discovery: a target per port)."""
    ingress_groups = []
    tls_hosts = set()
    for ingress in objects(target, "Ingress"):
        hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
        tls_hosts |= hosts
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                labels = meta_labels("ingress", ingress["metadata"]) | {
                    "__meta_kubernetes_ingress_class_name": ingress["spec"]["ingressClassName"],
                    "__meta_kubernetes_ingress_scheme": (
                        "https" if rule["host"] in hosts else "http"
                    ),
                    "__meta_kubernetes_ingress_path": path["path"],
                }
                ingress_groups.append({"targets": [rule["host"]], "labels": labels})
    service_groups = []
    for service in objects(target, "Service"):
        for port in service["spec"].get("ports", []):
            metadata = service["metadata"]
            labels = meta_labels("service", metadata) | {
                "__meta_kubernetes_service_type": service["spec"].get("type", "ClusterIP"),
                "__meta_kubernetes_service_port_name": port.get("name", ""),
                "__meta_kubernetes_service_port_number": str(port["port"]),
                "__meta_kubernetes_service_port_protocol": port.get("protocol", "TCP"),
            }
            address = f"{metadata['name']}.{metadata['namespace']}.svc:{port['port']}"
            service_groups.append({"targets": [address], "labels": labels})
    probed = {
        (labels["job"], labels["instance"], labels["__param_target"], labels["__address__"])
        for job, role, groups in (
            ("tls", "ingress", ingress_groups),
            ("tls-services", "service", service_groups),
        )
        for labels in relabelled(job, role, groups, tmp_path)
    }
    settings = one(target, "ConfigMap", "vehicle")["data"]
    broker = f"{settings['VEHICLE_MQTT_PUBLIC_HOST']}:{settings['VEHICLE_MQTT_PUBLIC_PORT']}"
    blackbox = "blackbox-exporter:9115"
    assert len(tls_hosts) == 2
    assert probed == {
        *(("tls", f"{host}:443", f"{host}:443", blackbox) for host in tls_hosts),
        ("tls", broker, broker, blackbox),
    }


# --- ingress and network policies --------------------------------------------------------------


@targets
def test_ingress_terminates_tls_and_routes_the_hosts(target):
    routes = {}
    for ingress in objects(target, "Ingress"):
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "nginx"
        assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
        tls_hosts = {host for tls in spec["tls"] for host in tls["hosts"]}
        for rule in spec["rules"]:
            assert rule["host"] in tls_hosts
            for path in rule["http"]["paths"]:
                routes[(rule["host"], path["path"])] = path["backend"]["service"]["name"]
        if name_of(ingress) == "gateway-websocket":
            annotations = ingress["metadata"]["annotations"]
            assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 60
    api, app = sorted({host for host, _ in routes})
    assert api.startswith("api.")
    assert app.startswith("app.")
    assert routes == {
        (api, "/"): "gateway",
        (api, "/api/v1/ws"): "gateway",
        (app, "/"): "frontend",
        (app, "/api"): "gateway",
        (app, "/api/v1/ws"): "gateway",
    }


def pod_labels(target: str) -> dict[str, dict[str, str]]:
    """Every pod template's labels, by workload or Job name."""
    pods = {}
    for o in [*workloads(target), *objects(target, "Job")]:
        pods[name_of(o)] = o["spec"]["template"]["metadata"]["labels"]
    return pods


def selects(selector: dict, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator == "Exists" and key not in labels:
            return False
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
    return True


def peer_matches(peer: dict, source: dict) -> bool:
    """A NetworkPolicy peer against a source: a pod of ours, a namespace, or an address."""
    if "ipBlock" in peer:
        if "address" not in source:
            return False
        return ipaddress.ip_address(source["address"]) in ipaddress.ip_network(
            peer["ipBlock"]["cidr"]
        )
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": source.get("namespace")}
        return selects(peer["namespaceSelector"], namespace_labels) and (
            "podSelector" not in peer or selects(peer["podSelector"], source.get("labels", {}))
        )
    return "labels" in source and selects(peer["podSelector"], source["labels"])


def allows_port(rule: dict, port: int) -> bool:
    """A rule without ports allows every port."""
    return "ports" not in rule or any(p["port"] == port for p in rule["ports"])


def admitted(target: str, source: dict, destination: str, port: int) -> bool:
    """Whether a connection to `destination` on `port` is let in by the ingress policies."""
    labels = pod_labels(target)[destination]
    for policy in objects(target, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            if allows_port(rule, port) and any(peer_matches(peer, source) for peer in rule["from"]):
                return True
    return False


def let_out(target: str, source: str, destination: str, port: int) -> bool:
    labels = pod_labels(target)[source]
    destination_labels = pod_labels(target)[destination]
    for policy in objects(target, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            if allows_port(rule, port) and any(
                peer_matches(peer, {"labels": destination_labels}) for peer in rule["to"]
            ):
                return True
    return False


def test_everything_is_denied_unless_a_policy_allows_it():
    deny = one("staging", "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


INGRESS_CONTROLLER = {"namespace": "ingress-nginx"}
INTERNET = {"address": "203.0.113.7"}


def test_only_the_gateway_and_the_dashboard_take_traffic_from_the_ingress():
    reachable = {
        name
        for name, labels in pod_labels("staging").items()
        for port in {*APPS.values(), 5432, 6379, 6432, 1883, 8883}
        if admitted("staging", INGRESS_CONTROLLER, name, port)
    }
    assert reachable == {"gateway", "frontend"}


def test_from_the_internet_only_devices_reach_the_broker_tls_and_the_tracker_ports():
    open_ports = {
        (name, port)
        for name in pod_labels("staging")
        for port in {*APPS.values(), 5432, 6379, 6432, 1883, 8883, 5027, 5023}
        if admitted("staging", INTERNET, name, port)
    }
    assert open_ports == {("mosquitto", 8883), ("location", 5027), ("location", 5023)}


@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_each_database_is_reached_only_by_its_service_through_pgbouncer(service):
    pods = pod_labels("staging")
    bouncer = f"{service}-pgbouncer"
    clients = {name for name in pods if admitted("staging", {"labels": pods[name]}, bouncer, 6432)}
    assert clients == {service}
    assert let_out("staging", service, bouncer, 6432)
    assert let_out("staging", bouncer, "postgres", 5432)
    server_clients = {
        name for name in pods if admitted("staging", {"labels": pods[name]}, "postgres", 5432)
    }
    assert server_clients == {*(f"{s}-pgbouncer" for s in DATABASE_SERVICES)} | {
        f"{s}-migrate" for s in DATABASE_SERVICES
    }
    for other in set(DATABASE_SERVICES) - {service}:
        assert not let_out("staging", other, bouncer, 6432)


def test_the_broker_is_reached_by_devices_location_and_vehicle_only():
    pods = pod_labels("staging")
    clients = {
        name for name in pods if admitted("staging", {"labels": pods[name]}, "mosquitto", 1883)
    }
    assert clients == {"vehicle", "location", "mosquitto-provision"}
    for name in ("vehicle", "location"):
        assert let_out("staging", name, "mosquitto", 1883)


def test_every_call_between_the_services_is_let_out_and_in():
    pods = pod_labels("staging")
    calls = [
        ("gateway", "auth", 8001),
        ("gateway", "vehicle", 8002),
        ("gateway", "location", 8003),
        ("gateway", "notification", 8004),
        ("location", "vehicle", 8002),
        *((s, "auth", 8001) for s in ("vehicle", "location", "notification")),
        *((s, "redis", 6379) for s in BACKENDS),
    ]
    for source, destination, port in calls:
        assert let_out("staging", source, destination, port), (source, destination)
        assert admitted("staging", {"labels": pods[source]}, destination, port), (
            source,
            destination,
        )
    # And nothing else calls a backend: only the gateway reaches notification, for example.
    for destination, port in BACKENDS.items():
        callers = {
            name for name in pods if admitted("staging", {"labels": pods[name]}, destination, port)
        }
        expected = {s for s, d, _ in calls if d == destination}
        assert callers == expected, destination
