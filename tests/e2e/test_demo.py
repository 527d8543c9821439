"""`leadrelay demo` against real processes: every kind of signed webhook and every REST path is accepted."""

import json

from leadrelay.broker import EmbeddedBroker
from tests.e2e.conftest import StackFactory, leadrelay

KINDS = {"hubspot", "mautic", "segment", "marketo", "pardot", "standard"}


async def test_the_demo_mix_is_accepted_and_its_leads_are_routed(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start()
    run = await leadrelay(
        "demo", "--rate", "20", "--duration", "3", "--seed", "7", "--url", stack["intake"].url, "--json"
    )
    assert run.code == 0, run.output
    summary = run.json()
    assert {name.removeprefix("webhook ") for name in summary["sent"] if name.startswith("webhook ")} == KINDS
    assert {"rest_lead", "account", "engagement"} <= set(summary["sent"])
    assert all(answer.endswith(("200", "201", "202")) for answer in summary["answers"]), summary["answers"]
    assert summary["lead_ids"] > 0

    listed = await stack.api.get("/v1/leads", params={"source": "demo-segment", "limit": 10})
    assert listed.status_code == 200, listed.text
    leads = listed.json()["leads"]
    assert leads, json.dumps(summary)
    await stack.wait_routed(leads[0]["id"])
