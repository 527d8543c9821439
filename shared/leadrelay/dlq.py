"""`leadrelay-dlq`: inspect and replay dead-lettered events.

    leadrelay-dlq list leads.scored            # what failed, why, where it came from (no payloads)
    leadrelay-dlq list leads.scored --payload  # include the event bodies (they may hold personal data)
    leadrelay-dlq replay leads.scored          # publish them again to their original topic

Replay remembers how far it got (consumer group `leadrelay-dlq-replay` on the dead-letter topic),
so running it twice does not publish anything twice. Fix the cause first: a replayed event that
fails again is dead-lettered again.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from leadrelay.events import dlq_topic
from leadrelay.kafka import read_available

REPLAY_GROUP = "leadrelay-dlq-replay"
DLQ_HEADER_PREFIX = "dlq_"


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


async def _consumer(bootstrap: str, group: str | None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    return consumer


async def list_dead_letters(bootstrap: str, topic: str, *, payload: bool) -> list[dict[str, object]]:
    """Every dead letter of `topic`, oldest first per partition."""
    consumer = await _consumer(bootstrap, None)
    try:
        records = await read_available(consumer, dlq_topic(topic))
    finally:
        await consumer.stop()
    entries = []
    for record in records:
        headers = _headers(record)
        entry: dict[str, object] = {
            "dlq_partition": record.partition,
            "dlq_offset": record.offset,
            "key": (record.key or b"").decode(errors="replace"),
            "event_id": headers.get("ce_id"),
            **{
                name.removeprefix(DLQ_HEADER_PREFIX): value
                for name, value in headers.items()
                if name.startswith(DLQ_HEADER_PREFIX)
            },
        }
        if payload:
            entry["payload"] = (record.value or b"").decode(errors="replace")
        entries.append(entry)
    return entries


async def replay(bootstrap: str, topic: str, *, dry_run: bool) -> int:
    """Publish `topic`'s dead letters not yet replayed back to their original topic."""
    source = dlq_topic(topic)
    consumer = await _consumer(bootstrap, REPLAY_GROUP)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        records = await read_available(consumer, source)
        if dry_run:
            return len(records)
        for record in records:
            headers = _headers(record)
            original = headers.get("dlq_original_topic", topic)
            kept = [(name, value.encode()) for name, value in headers.items() if not name.startswith(DLQ_HEADER_PREFIX)]
            await producer.send_and_wait(original, value=record.value, key=record.key, headers=kept)
            await consumer.commit({TopicPartition(source, record.partition): record.offset + 1})
        return len(records)
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `leadrelay-dlq`."""
    parser = argparse.ArgumentParser(
        prog="leadrelay-dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("list", help="show dead letters of a topic as JSON lines")
    show.add_argument("topic", help="the original topic, e.g. leads.scored")
    show.add_argument("--payload", action="store_true", help="include event bodies (may contain personal data)")
    again = commands.add_parser("replay", help="publish dead letters back to their original topic")
    again.add_argument("topic", help="the original topic, e.g. leads.scored")
    again.add_argument("--dry-run", action="store_true", help="only count what would be replayed")
    args = parser.parse_args(argv)
    if args.command == "list":
        for entry in asyncio.run(list_dead_letters(args.bootstrap_servers, args.topic, payload=args.payload)):
            sys.stdout.write(json.dumps(entry) + "\n")
    else:
        count = asyncio.run(replay(args.bootstrap_servers, args.topic, dry_run=args.dry_run))
        verb = "would replay" if args.dry_run else "replayed"
        sys.stdout.write(f"{verb} {count} dead letter(s) of {args.topic}\n")


if __name__ == "__main__":
    main()
