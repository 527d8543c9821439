"""`leadrelay-dlq` lists dead letters without their payloads and replays each one once."""

import asyncio
import json
import sys

from aiokafka import AIOKafkaProducer

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import Topic, dlq_topic
from leadrelay.testing import read_to_end


async def _cli(broker: EmbeddedBroker, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadrelay.dlq",
        "--bootstrap-servers",
        broker.bootstrap_servers,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_list_then_replay_once(broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for lead in ("lead-a", "lead-b"):
            headers = {
                "ce_id": f"event-{lead}",
                "dlq_original_topic": Topic.LEADS_SCORED.value,
                "dlq_original_offset": "7",
                "dlq_error_type": "ValidationError",
                "dlq_error_message": "score: Input should be a valid integer",
                "dlq_attempts": "1",
            }
            await producer.send_and_wait(
                dlq_topic(Topic.LEADS_SCORED),
                value=b'{"email": "ada@analytical.example"}',
                key=lead.encode(),
                headers=[(name, value.encode()) for name, value in headers.items()],
            )
    finally:
        await producer.stop()

    listed = [json.loads(line) for line in (await _cli(broker, "list", "leads.scored")).splitlines()]
    assert sorted(entry["key"] for entry in listed) == ["lead-a", "lead-b"]
    assert {entry["error_type"] for entry in listed} == {"ValidationError"}
    assert all("payload" not in entry for entry in listed)
    with_payload = await _cli(broker, "list", "leads.scored", "--payload")
    assert "ada@analytical.example" in with_payload

    assert "would replay 2" in await _cli(broker, "replay", "leads.scored", "--dry-run")
    assert "replayed 2" in await _cli(broker, "replay", "leads.scored")
    assert "replayed 0" in await _cli(broker, "replay", "leads.scored")

    replayed = await read_to_end(broker.bootstrap_servers, Topic.LEADS_SCORED)
    assert sorted((record.key or b"").decode() for record in replayed) == ["lead-a", "lead-b"]
    for record in replayed:
        names = {name for name, _ in record.headers}
        assert names == {"ce_id"}, names
