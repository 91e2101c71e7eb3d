"""Debian's Prometheus, the node, PostgreSQL, Redis and blackbox exporters and the five
services, all real processes on free ports, with the shipped rules: shared by test_live.py
(targets, rules, series, a service going down, a certificate near its end) and
test_dashboards.py (every panel's query returns data)."""

import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from fleet_devstack.plugin import RunningService
from fleet_devstack.servers import free_port, remove_tree
from fleet_devstack.stack import REPO_ROOT

MONITORING = REPO_ROOT / "infrastructure" / "monitoring"
SERVICES = ["auth", "vehicle", "location", "notification", "gateway"]
# The TLS endpoint's certificate: two days from its end, inside both expiry alerts' windows.
CERTIFICATE_LIFETIME = timedelta(days=2)


@dataclass
class Monitored:
    prometheus: str  # base URL
    services: dict[str, RunningService]
    ports: dict[str, int]  # every scrape job's local port
    env: dict[str, str]
    textfile_dir: Path
    certificate_expiry: datetime  # of the certificate the TLS endpoint serves
    processes: list[subprocess.Popen] = field(default_factory=list)

    def query(self, expr: str) -> list[dict]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def api(self, path: str) -> dict:
        return httpx.get(f"{self.prometheus}/api/v1/{path}", timeout=30).json()["data"]


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is missing: make bootstrap installs it (Debian's prometheus packages)")
    return found


def render_config(ports: dict[str, int], rules_dir: Path) -> dict:
    """prometheus.yml as shipped, its targets pointed at the local ports, intervals short.
    Job `auth` gets two instances (as `--scale auth=2` would): `auth-spare` is stopped."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_dir / "*.yml")]
    for job in config["scrape_configs"]:
        if job["job_name"] == "tls":
            # The probe's target is the TLS endpoint; the scrape goes to the blackbox exporter.
            job.pop("file_sd_configs")
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports['tls-endpoint']}"]}]
            (exporter,) = [r for r in job["relabel_configs"] if r["target_label"] == "__address__"]
            exporter["replacement"] = f"127.0.0.1:{ports['blackbox']}"
            continue
        job.pop("dns_sd_configs", None)
        names = [job["job_name"], *(["auth-spare"] if job["job_name"] == "auth" else [])]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[name]}" for name in names]}]
    return config


def self_signed_certificate(directory: Path) -> tuple[Path, Path, datetime]:
    """A certificate for 127.0.0.1 that ends CERTIFICATE_LIFETIME from now: its file (also the
    probe's CA), its key's file, and its end."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet-monitoring-test")])
    now = datetime.now(UTC).replace(microsecond=0)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, certificate.not_valid_after_utc


def serve_tls(cert_file: Path, key_file: Path) -> socket.socket:
    """A TLS endpoint on a free port that completes each handshake and hangs up (all a probe
    does); it serves until its socket is closed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                connection.close()

    threading.Thread(target=serve, name="tls-endpoint", daemon=True).start()
    return listener


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


def drive_traffic(monitored: Monitored, mqtt_port: int) -> None:
    """A dispatcher's day in miniature: sign-up, a vehicle, a device, a geofence, a rule,
    positions over MQTT (into the geofence: an alert and its delivery), and a few errors."""
    with httpx.Client(base_url=monitored.services["gateway"].url + "/api/v1", timeout=30) as api:
        suffix = uuid.uuid4().hex[:8]
        registered = api.post(
            "/auth/register",
            json={
                "org_name": f"Monitoring {suffix}",
                "email": f"ops-{suffix}@example.com",
                "password": "correct horse battery staple",
                "full_name": "Ops",
            },
        )
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}

        def created(path: str, body: dict) -> dict:
            response = api.post(path, headers=headers, json=body)
            assert response.status_code == 201, response.text
            return response.json()

        vehicle = created("/vehicles", {"name": "Van 1", "plate": f"MON-{suffix[:6]}"})
        uid = f"mon-{suffix}"
        device = created("/devices", {"uid": uid, "name": "Tracker", "vehicle_id": vehicle["id"]})
        square = [[106.70, 10.77], [106.71, 10.77], [106.71, 10.78], [106.70, 10.78]]
        polygon = {"type": "Polygon", "coordinates": [[*square, square[0]]]}
        created("/geofences", {"name": "Depot", "geometry": polygon})
        created(
            "/alert-rules",
            {"name": "Depot", "channels": ["in_app"], "event_types": ["geofence_enter"]},
        )
        for path in ("/vehicles", "/devices", "/geofences", "/alerts", "/vehicles/not-a-uuid"):
            api.get(path, headers=headers)
        api.get("/vehicles")  # 401

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)
        client.username_pw_set(device["credentials"]["username"], device["credentials"]["password"])
        client.connect("127.0.0.1", mqtt_port)
        client.loop_start()
        try:
            topic = f"fleet/{uid}/telemetry"
            for i, lon in enumerate((106.69, 106.695, 106.705, 106.706, 106.707)):
                payload = {"ts": datetime.now(UTC).isoformat(), "lat": 10.775, "lon": lon}
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(30)
                if i == 0:
                    client.publish(topic, b"{not json", qos=1).wait_for_publish(30)
                time.sleep(0.3)
            # Parked but reporting, until the offline sweep has counted it as seen and
            # Prometheus has scraped that (on a loaded machine the drive alone can be too short).
            deadline = time.monotonic() + 60
            while not monitored.query("max_over_time(telemetry_devices_seen[10m]) >= 1"):
                assert time.monotonic() < deadline, "the reporting device was never counted seen"
                payload = {"ts": datetime.now(UTC).isoformat(), "lat": 10.775, "lon": 106.707}
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(30)
                time.sleep(0.5)
        finally:
            client.loop_stop()
            client.disconnect()
        deadline = time.monotonic() + 30
        while not api.get("/alerts", headers=headers).json()["items"]:
            assert time.monotonic() < deadline, "the geofence alert never came"
            time.sleep(0.3)


@pytest.fixture(scope="session")
def monitored(stack, platform, run_service) -> Iterator[Monitored]:
    """On the session's platform (tests/conftest.py), plus a second auth instance of our
    own: the one test_live.py stops (the platform's services serve other tests)."""
    prometheus_bin = need("prometheus")
    node_bin = need("prometheus-node-exporter")
    postgres_bin = need("prometheus-postgres-exporter")
    redis_bin = need("prometheus-redis-exporter")
    blackbox_bin = need("prometheus-blackbox-exporter")
    work = Path(tempfile.mkdtemp(prefix="fleet-monitoring-"))
    textfile_dir = work / "textfile"
    textfile_dir.mkdir()
    cert_file, key_file, certificate_expiry = self_signed_certificate(work)
    tls_endpoint = serve_tls(cert_file, key_file)
    # The shipped modules, trusting the test's certificate as a client trusts a public CA.
    blackbox = yaml.safe_load((MONITORING / "blackbox.yml").read_text())
    blackbox["modules"]["tls"]["tcp"]["tls_config"]["ca_file"] = str(cert_file)
    (work / "blackbox.yml").write_text(yaml.safe_dump(blackbox))

    env = platform.env
    services = dict(platform.services)
    services["auth-spare"] = run_service("auth", env)
    ports = {name: int(service.url.rsplit(":", 1)[1]) for name, service in services.items()}
    ports.update(
        {name: free_port() for name in ("node", "postgres", "redis", "blackbox", "prometheus")}
    )
    ports["tls-endpoint"] = tls_endpoint.getsockname()[1]

    processes = [
        start(
            [
                node_bin,
                f"--web.listen-address=127.0.0.1:{ports['node']}",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.filesystem",
                f"--collector.textfile.directory={textfile_dir}",
                "--collector.textfile",
            ],
            work / "node.log",
        ),
        start(
            [
                postgres_bin,
                f"--web.listen-address=127.0.0.1:{ports['postgres']}",
                f"--extend.query-path={MONITORING / 'postgres-exporter' / 'queries.yaml'}",
            ],
            work / "postgres-exporter.log",
            env={
                "DATA_SOURCE_NAME": stack.postgres.url("postgres", driver="postgresql")
                + "?sslmode=disable"
            },
        ),
        start(
            [
                redis_bin,
                f"-web.listen-address=127.0.0.1:{ports['redis']}",
                f"-redis.addr={stack.redis.url.rsplit('/', 1)[0]}",
            ],
            work / "redis-exporter.log",
        ),
        start(
            [
                blackbox_bin,
                f"--config.file={work / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{ports['blackbox']}",
            ],
            work / "blackbox-exporter.log",
        ),
    ]
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump(render_config(ports, MONITORING / "rules")))
    processes.append(
        start(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--log.level=warn",
            ],
            work / "prometheus.log",
        )
    )
    monitored = Monitored(
        f"http://127.0.0.1:{ports['prometheus']}",
        services,
        ports,
        env,
        textfile_dir,
        certificate_expiry,
        processes,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{monitored.prometheus}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (work / "prometheus.log").read_text()
            time.sleep(0.2)
        drive_traffic(monitored, stack.mosquitto.port)
        # The nightly backup, for real, so that its figures reach node-exporter.
        backup = subprocess.run(
            [str(REPO_ROOT / "infrastructure" / "scripts" / "backup.sh")],
            env={
                **os.environ,
                **env,
                "FLEET_BACKUP_DIR": str(work / "backups"),
                "FLEET_BACKUP_TEXTFILE_DIR": str(textfile_dir),
                "MOSQUITTO_DYNSEC_FILE": str(stack.mosquitto.dynsec_file),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert backup.returncode == 0, backup.stderr
        yield monitored
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        tls_endpoint.close()
        remove_tree(work)
