"""Grafana's dashboards and provisioning. Grafana itself cannot be installed here, so every
panel's query runs against the live Prometheus of conftest.py and must return data, and the
JSON is checked for what Grafana needs: the provisioned data source, unique ids, units."""

import json
import time
from pathlib import Path

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "infrastructure" / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
TIMEOUT_S = 90.0


def datasource_uid() -> str:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    return source["uid"]


def panels(path: Path) -> list[dict]:
    return json.loads(path.read_text())["panels"]


def test_the_five_dashboards_are_there_and_provisioned():
    assert {p.stem for p in DASHBOARDS} == {
        "fleet-overview",
        "ingest-pipeline",
        "http-services",
        "data-stores",
        "backups",
    }
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/fleet.yml").read_text())
    assert provider["providers"][0]["type"] == "file"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path):
    dashboard = json.loads(path.read_text())
    uid = datasource_uid()
    assert dashboard["uid"] == path.stem
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        where = f"{path.stem} / {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert panel["targets"], where
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, where
            assert target["expr"].strip(), where
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_every_panel_query_returns_data(monitored):
    queries = [
        (f"{path.stem} / {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel in panels(path)
        for target in panel["targets"]
    ]
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        empty = [(where, expr) for where, expr in queries if not monitored.query(expr)]
        if not empty:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"panels without data: {empty}")
        time.sleep(1)
