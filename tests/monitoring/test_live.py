"""The shipped Prometheus configuration and rules against the running services (conftest.py):
every target up, every rule evaluating, every series a rule reads present, a certificate
near its end with both expiry alerts pending, and a stopped service's ServiceDown alert going
pending."""

import re
import time
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "infrastructure" / "monitoring"
SERVICES = ["auth", "vehicle", "location", "notification", "gateway"]
TIMEOUT_S = 90.0
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def rules() -> list[dict]:
    found = []
    for path in sorted((MONITORING / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (strings, label matchers, ranges, grouping
    labels and function names removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name not in KEYWORDS:
            names.add(name)
    return names


def eventually(check, what: str):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        result = check()
        if result is True:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: {result}")
        time.sleep(0.5)


def test_metric_names_reads_series_not_functions_or_labels():
    expr = (
        'sum by (service, le) (rate(http_request_duration_seconds_bucket{route=~"/a"}[5m]))'
        " / on () (fleet:x > 0) and absent(up)"
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "fleet:x", "up"}


def test_every_target_is_up(monitored):
    expected = {*SERVICES, "node", "postgres", "redis", "tls", "prometheus"}

    def all_up():
        targets = monitored.api("targets")["activeTargets"]
        health = {t["scrapeUrl"]: (t["labels"]["job"], t["health"]) for t in targets}
        jobs = {job for job, _ in health.values()}
        two_auths = len(health) == len(expected) + 1
        if jobs == expected and two_auths and all(h == "up" for _, h in health.values()):
            return True
        return health

    eventually(all_up, "not every target is up")


def test_every_rule_evaluates_without_error(monitored):
    names = {rule.get("record") or rule.get("alert") for rule in rules()}

    def all_ok():
        loaded = {}
        for group in monitored.api("rules")["groups"]:
            for rule in group["rules"]:
                loaded[rule["name"]] = (rule["health"], rule.get("lastError", ""))
        bad = {n: h for n, h in loaded.items() if h[0] != "ok"}
        if set(loaded) == names and not bad:
            return True
        return {"missing": sorted(names - set(loaded)), "unhealthy": bad}

    eventually(all_ok, "rules do not all evaluate")


def test_every_series_a_rule_reads_exists(monitored):
    wanted = set()
    for rule in rules():
        wanted |= metric_names(rule["expr"])
    assert "telemetry_positions_stored_total" in wanted  # the parser sees the rules' names

    def all_present():
        missing = sorted(name for name in wanted if not monitored.query(f"count({name})"))
        return missing or True

    eventually(all_present, "series the rules read are missing")


def test_the_services_report_the_new_figures(monitored):
    """Values, not only names: the pools, the broker, the pipeline, the stream, backups."""

    def figures():
        checks = {
            "pool size": 'db_pool_connections_max{service="vehicle", pool="sqlalchemy"} == 20',
            "location pools": 'count(db_pool_connections_max{service="location"}) == 3',
            "broker clients": "mosquitto_clients_connected >= 3",
            # The platform calls a device offline after 3 s of silence: seen while it drove.
            "devices seen": "max_over_time(telemetry_devices_seen[10m]) >= 1",
            "commit latency": "telemetry_receive_to_commit_seconds_count >= 1",
            "partitions ahead": "fleet:telemetry_partition_lead:seconds > 86400 * 5",
            "stream read": "notification_event_stream_lag >= 0",
            "backup": "fleet:backup_age:seconds < 600",
            "rejected": 'telemetry_rejected_total{reason="invalid_json"} >= 1',
        }
        failing = [name for name, expr in checks.items() if not monitored.query(expr)]
        return failing or True

    eventually(figures, "figures missing or wrong")


def test_a_certificate_near_its_end_has_both_expiry_alerts_pending(monitored):
    """The blackbox exporter probes the TLS endpoint (conftest.py: a certificate two days from
    its end) as the shipped job tls does, and reads the end of what is served."""
    instance = f"127.0.0.1:{monitored.ports['tls-endpoint']}"

    expiry = f'probe_ssl_earliest_cert_expiry{{instance="{instance}"}}'

    def probed():
        succeeded = monitored.query(f'probe_success{{instance="{instance}"}} == 1')
        return True if succeeded and monitored.query(expiry) else "no successful probe yet"

    eventually(probed, "the TLS endpoint was not probed")
    (found,) = monitored.query(expiry)
    assert float(found["value"][1]) == monitored.certificate_expiry.timestamp()

    def pending():
        states = {
            alert["labels"]["alertname"]: alert["state"]
            for alert in monitored.api("alerts")["alerts"]
            if alert["labels"].get("instance") == instance
        }
        expected = {"TLSCertificateExpiringSoon", "TLSCertificateNearlyExpired"}
        return True if set(states) == expected else states

    eventually(pending, "the certificate alerts did not go pending")


def test_a_stopped_service_has_its_down_alert_pending(monitored):
    """Last in this module: it stops the spare auth instance for good."""
    service = monitored.services["auth-spare"]
    instance = f"127.0.0.1:{monitored.ports['auth-spare']}"
    service.process.terminate()
    service.process.wait(30)

    def pending():
        for alert in monitored.api("alerts")["alerts"]:
            labels = alert["labels"]
            if labels["alertname"] == "ServiceDown" and labels["instance"] == instance:
                return True if alert["state"] in ("pending", "firing") else alert
        return "no ServiceDown alert yet"

    eventually(pending, "ServiceDown did not go pending")
    down = [
        a["labels"]["instance"]
        for a in monitored.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "ServiceDown"
    ]
    assert down == [instance]


def test_backup_files_are_complete(monitored):
    backups = sorted(Path(monitored.textfile_dir).parent.glob("backups/fleet-*"))
    assert len(backups) == 1
    names = {p.name for p in backups[0].iterdir()}
    assert {
        f"{db}.dump" for db in ("auth_db", "vehicle_db", "location_db", "notification_db")
    } <= names
    assert {"dynamic-security.json", "SHA256SUMS", "MANIFEST"} <= names
