"""Prometheus configuration and rules: promtool's checks, and a unit test for every alert.

The rules are proven against the running services in test_live.py; here promtool checks the
files and runs tests/alerts-test.yml, and this module makes sure that file has, for every
alert, a case where it fires and one where it stays quiet.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "infrastructure" / "monitoring"
RULE_FILES = sorted((MONITORING / "rules").glob("*.yml"))
UNIT_TESTS = sorted((MONITORING / "tests").glob("*-test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: apt-get install prometheus (make bootstrap does)")
    return subprocess.run(
        ["promtool", *args], cwd=MONITORING, capture_output=True, text=True, check=False
    )


def alerts() -> dict[str, dict]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = rule
    return found


def test_the_compose_configuration_is_valid_and_loads_every_rule_file():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:
        assert f"Checking rules/{path.name}" in result.stdout


def test_the_rule_files_are_valid():
    result = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_unit_test_passes():
    result = promtool("test", "rules", *(str(p) for p in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_quiet():
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alerts())
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_has_severity_for_summary_and_description(name):
    rule = alerts()[name]
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert "for" in rule
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"].split()) >= 8


def test_the_kubernetes_configuration_uses_the_same_rules_and_keeps_the_job_names():
    """Debian's promtool is built without Kubernetes discovery, so each discovery block is
    checked by swapping it for a file discovery of the same shape; tests/infra/test_kubernetes.py
    runs the jobs' relabelling over the rendered manifests."""
    config = yaml.safe_load((MONITORING / "prometheus-kubernetes.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    roles = {}
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            (discovery,) = job.pop("kubernetes_sd_configs")
            roles[job["job_name"]] = discovery["role"]
            job["file_sd_configs"] = [{"files": ["/nonexistent/targets.json"]}]
    assert roles == {"kubernetes-pods": "pod", "tls": "ingress", "tls-services": "service"}
    checked = MONITORING / ".prometheus-kubernetes-check.yml"
    checked.write_text(yaml.safe_dump(config))
    try:
        result = promtool("check", "config", checked.name)
    finally:
        checked.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
