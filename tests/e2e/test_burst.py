"""A burst faster than the pipeline drains completely, and nothing merely queued is re-published."""

import asyncio
from collections import Counter

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import Topic
from leadrelay.testing import Stack, count_rows, metric_value, read_to_end, wait_until
from tests.e2e.conftest import StackFactory

BURST = 600
# Re-drive looks at every lead in flight for over a second, twice a second, while the burst is queued.
EAGER_REDRIVE = {"REDRIVE_AFTER_SECONDS": "1", "REDRIVE_CHECK_INTERVAL_SECONDS": "0.5"}


async def _post_burst(stack: Stack) -> list[str]:
    limits = asyncio.Semaphore(32)

    async def post(number: int) -> str:
        async with limits:
            return await stack.post_lead(email=f"burst{number}@analytical.example", source="list-upload")

    return list(await asyncio.gather(*(post(number) for number in range(BURST))))


async def test_burst_is_routed_with_exactly_one_lead_received_per_lead(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker, env=EAGER_REDRIVE)
    await stack.start()
    await stack.stop("scoring")  # the burst queues up in leads.received, as behind a slow consumer

    lead_ids = await _post_burst(stack)
    assert len(set(lead_ids)) == BURST

    async def checked_while_queued() -> bool:
        checked = await metric_value(stack["intake"].url, "leadrelay_leads_checked_in_broker_total")
        return checked >= BURST

    await wait_until(checked_while_queued, timeout=60, what="re-drive to look up every queued lead in the broker")
    await stack.start("scoring")

    async def all_routed() -> bool:
        return await count_rows(stack.database_urls["sla-monitor"], "sla_timer") >= BURST

    await wait_until(all_routed, timeout=120, interval=0.5, what=f"{BURST} SLA timers")
    for lead_id in lead_ids[:: BURST // 20]:  # the read model caught up too
        await stack.wait_routed(lead_id, timeout=30)

    received = Counter(
        (record.key or b"").decode() for record in await read_to_end(broker.bootstrap_servers, Topic.LEADS_RECEIVED)
    )
    assert set(received) == set(lead_ids)
    assert set(received.values()) == {1}, "a lead that was only queued was re-published"
    assert await metric_value(stack["intake"].url, "leadrelay_leads_redriven_total") == 0
