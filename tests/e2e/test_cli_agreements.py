"""`leadrelay agreements` against the real services: the session docs/agreements.md shows, as a test."""

from pathlib import Path

import yaml

from leadrelay.broker import EmbeddedBroker
from tests.e2e.conftest import StackFactory, leadrelay

MARKETING = "lr_demo_marketing_insecure"
SALES = "lr_demo_sales_insecure"
SLA_V1 = {
    "note": "accept within 15 minutes, first touch within 30",
    "document": {
        "obligations": [
            {"name": "accept", "met_by": ["accepted"], "clock": "wall", "targets": [{"within": "15m"}]},
            {"name": "first_touch", "met_by": ["contacted"], "clock": "wall", "targets": [{"within": "30m"}]},
        ]
    },
}


async def test_teams_co_sign_an_sla_and_reject_a_change_through_the_cli(
    broker: EmbeddedBroker, make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(broker)
    await stack.start("intake", "sla-monitor")
    url = ("--url", stack["sla-monitor"].url)
    for key in (MARKETING, SALES):
        await stack.wait_key_known("sla-monitor", key, timeout=10)
    draft = tmp_path / "sla-v1.yaml"
    draft.write_text(yaml.safe_dump(SLA_V1))

    drafted = await leadrelay("agreements", "draft", "sla", str(draft), *url, "--json")
    assert drafted.code == 0, drafted.output
    assert (drafted.json()["version"], drafted.json()["status"]) == (1, "draft")

    ops_signs = await leadrelay("agreements", "approve", "sla", "1", *url)  # the dev key: team ops
    assert ops_signs.code == 4
    assert "does not sign sla" in ops_signs.stderr
    assert "Traceback" not in ops_signs.output

    marketing = await leadrelay("agreements", "approve", "sla", "1", *url, "--json", key=MARKETING)
    assert marketing.code == 0, marketing.output
    assert (marketing.json()["status"], marketing.json()["approved_teams"]) == ("draft", ["marketing"])
    sales = await leadrelay("agreements", "approve", "sla", "1", "--note", "sales can staff this", *url, key=SALES)
    assert sales.code == 0, sales.output
    active = await leadrelay("agreements", "show", "sla", "active", *url, "--json")
    assert active.code == 0, active.output
    assert (active.json()["version"], active.json()["status"]) == (1, "active")
    assert [entry["action"] for entry in active.json()["history"]] == ["drafted", "approved", "approved", "activated"]

    exported = tmp_path / "sla.yaml"
    assert (await leadrelay("agreements", "export", "sla", "1", "-o", str(exported), *url)).code == 0
    assert yaml.safe_load(exported.read_text()) == {"kind": "sla", **SLA_V1}
    changed = exported.read_text().replace("within: 15m", "within: 10m")
    exported.write_text(changed)
    imported = await leadrelay("agreements", "import", "sla", str(exported), *url, "--json")
    assert imported.code == 0, imported.output
    assert (imported.json()["version"], imported.json()["status"]) == (2, "draft")

    diff = await leadrelay("agreements", "diff", "sla", "1", "2", *url, "--json")
    assert diff.code == 0, diff.output
    assert diff.json()["changes"] == [
        {"op": "replace", "path": "/obligations/0/targets/0/within", "from": "15m", "to": "10m"}
    ]

    rejected = await leadrelay(
        "agreements", "reject", "sla", "2", "--reason", "not staffed for 10 minutes", *url, key=SALES
    )
    assert rejected.code == 0, rejected.output
    too_late = await leadrelay("agreements", "approve", "sla", "2", *url, key=MARKETING)
    assert too_late.code == 1
    assert "409" in too_late.stderr

    listed = await leadrelay("agreements", "list", "sla", *url, "--json")
    assert listed.code == 0, listed.output
    assert [(entry["version"], entry["status"]) for entry in listed.json()["versions"]] == [
        (2, "rejected"),
        (1, "active"),
    ]
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(yaml.safe_dump({"document": {"obligations": []}}))
    refused = await leadrelay("agreements", "draft", "sla", str(invalid), *url)
    assert refused.code == 1
    assert "/document/obligations" in refused.stderr
