"""`leadrelay agreements preview icp` against the real services: leads scored by scoring, a draft's impact shown."""

from pathlib import Path

import httpx
import yaml

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, count_rows, wait_until
from tests.e2e.conftest import StackFactory, leadrelay

LEADS = 3
EVERYONE = {
    "note": "every lead is an MQL",
    "document": {
        "fit": [{"name": "company_given", "type": "exists", "field": "company", "points": 10}],
        "engagement": {"points": {"demo_requested": 40}},
        "grades": {"fit": {"A": 10, "B": 5, "C": 1}, "engagement": {"1": 40, "2": 20, "3": 5}},
        "mql": {"any": [{"name": "anyone"}]},
    },
}


async def test_preview_shows_what_a_draft_would_change_and_changes_nothing(
    broker: EmbeddedBroker, make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(broker)
    await stack.start("intake", "scoring")
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    async with httpx.AsyncClient(base_url=stack["intake"].url, headers=headers, timeout=10) as intake:
        for number in range(LEADS):
            # No company, title or size: the default ICP grades these D, never an MQL.
            sent = await intake.post("/v1/leads", json={"email": f"p{number}@preview.example", "source": "api"})
            assert sent.status_code in (201, 202), sent.text

    async def all_scored() -> bool:
        return await count_rows(stack.database_urls["scoring"], "lead_score") == LEADS

    await wait_until(all_scored, timeout=30, what="scoring to score every lead")
    url = ("--url", stack["scoring"].url)
    draft = tmp_path / "everyone.yaml"
    draft.write_text(yaml.safe_dump(EVERYONE))
    drafted = await leadrelay("agreements", "draft", "icp", str(draft), *url, "--json")
    assert drafted.code == 0, drafted.output

    shown = await leadrelay("agreements", "preview", "icp", "1", "--days", "7", *url, "--json")
    assert shown.code == 0, shown.output
    preview = shown.json()
    assert (preview["compared_with"], preview["leads"], preview["days"]) == ("default", LEADS, 7)
    assert (preview["mql"], preview["flips"], len(preview["sample"])) == ({"before": 0, "after": LEADS}, LEADS, LEADS)
    assert sum(preview["grades"]["after"].values()) == LEADS

    table = await leadrelay("agreements", "preview", "icp", "1", *url)
    assert table.code == 0, table.output
    assert f"MQLs 0 -> {LEADS} (+{LEADS})" in table.stdout
    assert "decisions that flip" in table.stdout

    missing = await leadrelay("agreements", "preview", "icp", "9", *url)
    assert (missing.code, "No icp version 9." in missing.stderr) == (1, True)
    wrong_kind = await leadrelay("agreements", "preview", "sla", "1", *url)
    assert (wrong_kind.code, "only icp versions can be previewed" in wrong_kind.stderr) == (2, True)
    listed = await leadrelay("agreements", "list", "icp", *url, "--json")
    assert [version["status"] for version in listed.json()["versions"]] == ["draft"]  # nothing was signed or changed
