"""leadrelay.observe: the deploy/ configs rendered for 127.0.0.1, and the local on-call sink."""

from pathlib import Path

import httpx

from leadrelay.observe import (
    ONCALL_URL_FILE,
    OncallSink,
    alertmanager_config,
    describe,
    local_targets,
    prometheus_config,
)
from leadrelay.testing import free_port

NOTIFICATION = {
    "version": "4",
    "status": "firing",
    "receiver": "oncall",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "LeadRelaySlaBreaches", "team": "team-na", "category": "sla"}},
        {"status": "resolved", "labels": {"alertname": "LeadRelayServiceDown", "service": "router"}},
    ],
}


def test_local_targets_follow_the_procfile_port_overrides() -> None:
    assert local_targets({"ROUTER_PORT": "18002", "SLA_MONITOR_PORT": "18003"}) == {
        "intake": "127.0.0.1:8000",
        "scoring": "127.0.0.1:8001",
        "router": "127.0.0.1:18002",
        "sla-monitor": "127.0.0.1:18003",
    }


def test_prometheus_config_points_at_the_given_targets_alertmanager_and_rules() -> None:
    config = prometheus_config(
        targets={"intake": "h:1", "scoring": "h:2", "router": "h:3", "sla-monitor": "h:4"},
        alertmanager="127.0.0.1:19093",
        scrape_interval="1s",
        evaluation_interval="2s",
    )

    groups = config["scrape_configs"][0]["static_configs"]
    assert [(group["labels"]["service"], group["targets"]) for group in groups] == [
        ("intake", ["h:1"]),
        ("scoring", ["h:2"]),
        ("router", ["h:3"]),
        ("sla-monitor", ["h:4"]),
    ]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["127.0.0.1:19093"]}]}]
    assert (config["global"]["scrape_interval"], config["global"]["evaluation_interval"]) == ("1s", "2s")
    assert all(Path(rules).is_absolute() and Path(rules).is_file() for rules in config["rule_files"])


def test_alertmanager_config_inlines_the_oncall_url_and_shortens_waits_only_when_asked() -> None:
    default = alertmanager_config(oncall_url="https://oncall.example/a?b=1&c=2")
    quick = alertmanager_config(oncall_url="http://127.0.0.1:1/oncall", group_wait="1s", group_interval="2s")

    oncall = next(receiver for receiver in default["receivers"] if receiver["name"] == "oncall")
    assert oncall["webhook_configs"] == [{"url": "https://oncall.example/a?b=1&c=2", "send_resolved": True}]
    assert ONCALL_URL_FILE not in str(default)
    assert (default["route"]["group_wait"], default["route"]["group_interval"]) == ("30s", "5m")
    assert (quick["route"]["group_wait"], quick["route"]["group_interval"]) == ("1s", "2s")
    assert "group_wait" not in quick["route"]["routes"][0]  # the on-call route inherits the root's


async def test_oncall_sink_keeps_what_alertmanager_posts() -> None:
    seen: list[str] = []
    sink = OncallSink(free_port(), on_notification=lambda notification: seen.append(describe(notification)))
    sink.start()
    try:
        async with httpx.AsyncClient() as client:
            posted = await client.post(sink.url, json=NOTIFICATION)
            garbage = await client.post(sink.url, content=b"not json")
    finally:
        sink.stop()

    assert (posted.status_code, garbage.status_code) == (200, 400)
    assert [alert["labels"]["alertname"] for alert in sink.alerts()] == ["LeadRelaySlaBreaches", "LeadRelayServiceDown"]
    assert seen == [
        "on-call notified [firing]: LeadRelaySlaBreaches(team-na) firing, LeadRelayServiceDown(router) resolved"
    ]
