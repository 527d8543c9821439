"""deploy/prometheus, deploy/alertmanager and deploy/grafana checked by Prometheus's own tools and against the code.

promtool and amtool check what the servers would refuse; the rest checks what they would accept and
get wrong: an alert without a unit test or a runbook, a dashboard or alert on a metric no service exposes.
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from leadrelay.observe import alertmanager_config, local_targets, prometheus_config, write_config
from tests.observability.conftest import DEPLOY, ROOT, run

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "tests" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sla-oncall.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRIC = re.compile(r"\bleadrelay_[a-z_]+")


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def exposed_metrics() -> set[str]:
    """Metric names the services and the shared library define (names in their source)."""
    names: set[str] = set()
    for folder in (ROOT / "shared" / "leadrelay", ROOT / "services"):
        for source in folder.rglob("*.py"):
            names.update(re.findall(r'"(leadrelay_[a-z_]+)"', source.read_text()))
    return names


def defined(name: str, names: set[str]) -> bool:
    """Whether a queried series name is a defined metric (histograms add _bucket, _sum and _count)."""
    return name in names or any(name == f"{base}{suffix}" for base in names for suffix in ("_bucket", "_sum", "_count"))


def test_prometheus_config_and_rules_pass_promtool(promtool: str) -> None:
    checked = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(promtool: str) -> None:
    tested = run(promtool, "test", "rules", str(ALERT_TESTS))
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]

    assert tested.returncode == 0, tested.stdout + tested.stderr
    for rule in alert_rules():
        mine = [check for check in checks if check["alertname"] == rule["alert"]]
        assert any(check.get("exp_alerts") for check in mine), f"{rule['alert']} is never tested firing"
        assert any(not check.get("exp_alerts") for check in mine), f"{rule['alert']} is never tested quiet"


def test_promtool_unit_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    loosened = ALERTS.read_text().replace("[15m])) > 3", "[15m])) > 2")
    assert loosened != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(loosened)
    (tmp_path / "tests" / "alerts_test.yml").write_text(ALERT_TESTS.read_text())

    tested = run(promtool, "test", "rules", str(tmp_path / "tests" / "alerts_test.yml"))

    assert tested.returncode != 0
    assert "LeadRelaySlaBreaches" in tested.stdout + tested.stderr


def test_every_alert_has_a_summary_a_description_and_a_runbook_section() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    rules = alert_rules()

    assert len(rules) == 7
    for rule in rules:
        annotations, labels = rule["annotations"], rule["labels"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in headings, f"docs/runbooks.md has no section for {rule['alert']}"
        assert labels["severity"] in {"page", "warning"}
        assert labels["category"] in {"sla", "pipeline"}
    assert {rule["alert"] for rule in rules if rule["labels"]["category"] == "sla"} == {
        "LeadRelaySlaBreaches",
        "LeadRelaySlaAtRisk",
    }


def test_alerts_and_dashboard_query_only_metrics_the_services_expose() -> None:
    names = exposed_metrics()
    queried = {name for rule in alert_rules() for name in METRIC.findall(rule["expr"])}
    queried |= {name for _, expr in dashboard_queries() for name in METRIC.findall(expr)}

    assert "leadrelay_sla_breaches_total" in names  # the scan finds the sla-monitor's metrics
    assert sorted(name for name in queried if not defined(name, names)) == []


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    # promtool parses expressions in rule files only: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr.replace("$team", ".*").replace("$source", ".*")}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    write_config(tmp_path / "dashboard.yml", rules)

    checked = run(promtool, "check", "rules", str(tmp_path / "dashboard.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(queries) >= 15


def test_dashboard_has_team_and_source_variables_and_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]

    assert set(variables) == {"team", "source"}
    assert all(variable["includeAll"] and variable["allValue"] == ".*" for variable in variables.values())
    assert all(panel["datasource"]["uid"] == uid for panel in panels)
    assert all(target["datasource"]["uid"] == uid for panel in panels for target in panel["targets"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for wanted in ("breaches_total", "at_risk", "open_obligations", "response_seconds", "met_total"):
        assert f"leadrelay_sla_{wanted}" in exprs
    assert '{source=~"$source"}' in exprs


def test_rendered_local_prometheus_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    config = prometheus_config(
        targets=local_targets({"SLA_MONITOR_PORT": "18003"}), alertmanager="127.0.0.1:9093", scrape_interval="1s"
    )
    path = write_config(tmp_path / "prometheus.yml", config)

    checked = run(promtool, "check", "config", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    targets = {group["labels"]["service"]: group["targets"] for group in config["scrape_configs"][0]["static_configs"]}
    assert targets == {
        "intake": ["127.0.0.1:8000"],
        "scoring": ["127.0.0.1:8001"],
        "router": ["127.0.0.1:8002"],
        "sla-monitor": ["127.0.0.1:18003"],
    }


def test_alertmanager_config_rendered_pages_oncall_for_sla_alerts_only(amtool: str, tmp_path: Path) -> None:
    url = "https://oncall.example/hooks/leadrelay?token=a&b=c"
    path = write_config(tmp_path / "alertmanager.yml", alertmanager_config(oncall_url=url))

    checked = run(amtool, "check-config", str(path))
    route = (amtool, "config", "routes", "test", f"--config.file={path}")
    sla = run(*route, "alertname=LeadRelaySlaBreaches", "category=sla")
    other = run(*route, "alertname=LeadRelayServiceDown", "category=pipeline")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (sla.stdout.strip(), other.stdout.strip()) == ("oncall", "default"), (sla, other)
    assert f"url: {url}" in path.read_text()
    assert "url_file" not in path.read_text()


def test_compose_runs_the_observability_stack_on_the_deploy_configs() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    mounts = {name: services[name]["volumes"] for name in ("prometheus", "alertmanager", "grafana")}
    alertmanager = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    oncall = next(receiver for receiver in alertmanager["receivers"] if receiver["name"] == "oncall")

    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts["prometheus"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in mounts["alertmanager"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts["grafana"]
    assert oncall["webhook_configs"][0]["url_file"] == f"/run/secrets/{services['alertmanager']['secrets'][0]}"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [target for group in prometheus["scrape_configs"][0]["static_configs"] for target in group["targets"]]
    assert targets == ["intake:8000", "scoring:8001", "router:8002", "sla-monitor:8003"]
    assert all(name.split(":")[0] in services for name in targets)
