"""`leadrelay dlq ...`: inspect and replay dead letters, straight from Kafka."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer

from leadrelay.cli import output
from leadrelay.cli.http import CliError, ExitCode
from leadrelay.cli.options import JsonFlag

T = TypeVar("T")

app = typer.Typer(
    help="Dead letters: what a consumer gave up on, with why; replay them once the cause is fixed.",
    no_args_is_help=True,
)

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS", show_envvar=True, help="Kafka bootstrap servers, host:port."
    ),
]
TopicArgument = Annotated[str, typer.Argument(metavar="TOPIC", help="The original topic, e.g. leads.scored.")]
Payload = Annotated[bool, typer.Option("--payload", help="Include event bodies (they may hold personal data).")]
LISTED_COLUMNS = (
    "dlq_partition",
    "dlq_offset",
    "key",
    "event_id",
    "consumer_group",
    "error_type",
    "error_message",
    "attempts",
    "failed_at",
)
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _run(bootstrap: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from aiokafka.errors import KafkaError

    # aiokafka logs its connection failures itself; the CLI reports them once, as a CliError.
    logging.getLogger("aiokafka").disabled = True
    try:
        return asyncio.run(work())
    except TimeoutError as exc:
        raise CliError(ExitCode.UNREACHABLE, f"the Kafka broker at {bootstrap} did not answer in time: {exc}") from None
    except (KafkaError, OSError) as exc:  # after TimeoutError, an OSError
        reason = str(exc) or type(exc).__name__
        raise CliError(ExitCode.UNREACHABLE, f"could not reach the Kafka broker at {bootstrap}: {reason}") from None


@app.command("list")
def list_dead_letters(
    topic: TopicArgument,
    payload: Payload = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    as_json: JsonFlag = False,
) -> None:
    """Every dead letter of TOPIC: where it sits, its key and event id, why it failed."""
    from leadrelay import dlq  # Kafka is imported only where used: the CLI starts faster

    entries = _run(bootstrap, lambda: dlq.list_dead_letters(bootstrap, topic, payload=payload))
    if as_json:
        output.emit_json({"topic": topic, "dead_letters": entries})
        return
    columns = (*LISTED_COLUMNS, "payload") if payload else LISTED_COLUMNS
    output.stdout.print(output.table(entries, columns, title=f"{len(entries)} dead letter(s) of {topic}"))


@app.command()
def show(
    topic: TopicArgument,
    partition: Annotated[int, typer.Argument(min=0, help="Partition of the dead-letter topic.")],
    offset: Annotated[int, typer.Argument(min=0, help="Offset in that partition.")],
    payload: Payload = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    as_json: JsonFlag = False,
) -> None:
    """One dead letter of TOPIC, by its partition and offset in TOPIC.dlq."""
    from leadrelay import dlq  # Kafka is imported only where used: the CLI starts faster

    entry = _run(
        bootstrap,
        lambda: dlq.get_dead_letter(bootstrap, topic, partition=partition, offset=offset, payload=payload),
    )
    if entry is None:
        raise CliError(ExitCode.REFUSED, f"no dead letter of {topic} at partition {partition}, offset {offset}")
    if as_json:
        output.emit_json(entry)
        return
    for name, value in entry.items():
        output.stdout.print(f"{name}: {value}", markup=False)


@app.command()
def replay(
    topic: TopicArgument,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be replayed.")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    as_json: JsonFlag = False,
) -> None:
    """Publish TOPIC's dead letters not replayed yet back to their original topic, each once."""
    from leadrelay import dlq  # Kafka is imported only where used: the CLI starts faster

    count = _run(bootstrap, lambda: dlq.replay(bootstrap, topic, dry_run=dry_run))
    if as_json:
        output.emit_json({"topic": topic, "dry_run": dry_run, "count": count})
        return
    verb = "would replay" if dry_run else "replayed"
    output.stdout.print(f"{verb} {count} dead letter(s) of {topic}", markup=False)
