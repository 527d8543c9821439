"""Two router replicas sharing one PostgreSQL database assign every lead exactly once."""

from pathlib import Path

import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, ServiceProcess, count_rows, free_port
from tests.e2e.conftest import StackFactory

pytestmark = pytest.mark.postgres


async def test_two_router_replicas_assign_each_lead_once(
    broker: EmbeddedBroker, make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(broker, backend="postgres")
    second_router = ServiceProcess(
        "router",
        port=free_port(),
        workdir=tmp_path,
        name="router-2",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DATABASE_URL": stack.database_urls["router"],
            "LEADRELAY_DEV_API_KEY": DEV_API_KEY,
        },
    )
    second_router.start()  # starts together with the first: migrations must not collide
    try:
        await stack.start()
        await second_router.wait_healthy()

        lead_ids = [await stack.post_lead(email=f"lead{i}@analytical.example") for i in range(20)]
        for lead_id in lead_ids[:5]:
            await stack.wait_routed(lead_id)
        await second_router.kill()  # the surviving replica takes over its partitions
        lead_ids += [await stack.post_lead(email=f"late{i}@analytical.example") for i in range(10)]

        for lead_id in lead_ids:
            lead = await stack.wait_routed(lead_id, timeout=60)
            types = [entry["type"] for entry in lead["timeline"]]  # type: ignore[union-attr]
            assert types.count("lead.assigned") == 1, (lead_id, types)
        assert await count_rows(stack.database_urls["router"], "assignment") == 30
    finally:
        await second_router.stop()
