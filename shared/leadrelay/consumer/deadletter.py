"""Publishing a record that cannot be handled to `<topic>.dlq`, with why in its headers."""

import logging

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from leadrelay.events import dlq_topic, utcnow
from leadrelay.kafka import KafkaBus, OutgoingMessage
from leadrelay.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


def describe(error: BaseException) -> str:
    """An error's message without the offending input (it may be an email or a phone number)."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'event'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
    return str(error)


class DeadLetterPublisher:
    """Sends a record, with its original headers and the failure, to its topic's dead-letter topic."""

    def __init__(self, *, bus: KafkaBus, group: str, metrics: ServiceMetrics) -> None:
        self._bus = bus
        self._group = group
        self._metrics = metrics

    async def publish(self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int) -> None:
        """Dead-letter `record`; returns once the broker acknowledged it."""
        topic = dlq_topic(record.topic)
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        headers.update(
            {
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_consumer_group": self._group,
                "dlq_error_type": type(error).__name__,
                "dlq_error_message": describe(error)[:2000],
                "dlq_attempts": str(attempts),
                "dlq_failed_at": utcnow().isoformat(),
            }
        )
        key = (record.key or b"").decode(errors="replace")
        await self._bus.publish_batch(
            [OutgoingMessage(topic=topic, key=key, value=record.value or b"", headers=headers)]
        )
        self._metrics.events_dead_lettered_total.labels(record.topic).inc()
        logger.error(
            "event dead-lettered",
            extra={"topic": record.topic, "offset": record.offset, "dlq_topic": topic, "error": type(error).__name__},
        )
