"""`leadrelay dlq` lists dead letters without their payloads, shows one, and replays each one once."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from leadrelay.broker import EmbeddedBroker
from leadrelay.events import Topic, dlq_topic
from leadrelay.testing import free_port, read_to_end

LEADRELAY = Path(sys.executable).parent / "leadrelay"


async def _run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        LEADRELAY, "dlq", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def _cli(broker: EmbeddedBroker, *args: str) -> str:
    code, stdout, stderr = await _run(*args, "--bootstrap", broker.bootstrap_servers)
    assert code == 0, stderr
    return stdout


async def _json(broker: EmbeddedBroker, *args: str) -> Any:
    return json.loads(await _cli(broker, *args, "--json"))


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

    answer = await _json(broker, "list", "leads.scored")
    assert answer["topic"] == "leads.scored"
    listed = answer["dead_letters"]
    assert sorted(entry["key"] for entry in listed) == ["lead-a", "lead-b"]
    assert {entry["error_type"] for entry in listed} == {"ValidationError"}
    assert all("payload" not in entry for entry in listed)
    assert "ada@analytical.example" not in await _cli(broker, "list", "leads.scored")
    assert "lead-a" in await _cli(broker, "list", "leads.scored")
    with_payload = await _json(broker, "list", "leads.scored", "--payload")
    assert {entry["payload"] for entry in with_payload["dead_letters"]} == {'{"email": "ada@analytical.example"}'}

    first = listed[0]
    where = (str(first["dlq_partition"]), str(first["dlq_offset"]))
    shown = await _json(broker, "show", "leads.scored", *where)
    assert shown == first
    assert "ada@analytical.example" not in await _cli(broker, "show", "leads.scored", *where)
    assert "ada@analytical.example" in await _cli(broker, "show", "leads.scored", *where, "--payload")
    code, _, stderr = await _run("show", "leads.scored", where[0], "999", "--bootstrap", broker.bootstrap_servers)
    assert code == 1
    assert "no dead letter" in stderr

    assert await _json(broker, "replay", "leads.scored", "--dry-run") == {
        "topic": "leads.scored",
        "dry_run": True,
        "count": 2,
    }
    assert "replayed 2" in await _cli(broker, "replay", "leads.scored")
    assert "replayed 0" in await _cli(broker, "replay", "leads.scored")

    replayed = await read_to_end(broker.bootstrap_servers, Topic.LEADS_SCORED)
    assert sorted((record.key or b"").decode() for record in replayed) == ["lead-a", "lead-b"]
    for record in replayed:
        names = {name for name, _ in record.headers}
        assert names == {"ce_id"}, names


async def test_unreachable_broker_exits_3_without_a_traceback() -> None:
    code, stdout, stderr = await _run("list", "leads.scored", "--bootstrap", f"127.0.0.1:{free_port()}")
    assert code == 3, stderr
    assert "could not reach the Kafka broker" in stderr
    assert "Traceback" not in stderr + stdout
