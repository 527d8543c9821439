"""A batch of records in one database transaction; a record that fails is isolated, retried, dead-lettered."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import idempotency
from leadrelay.consumer.deadletter import DeadLetterPublisher, describe
from leadrelay.consumer.handlers import Handlers, Route
from leadrelay.consumer.retry import RetryPolicy
from leadrelay.db import SessionFactory
from leadrelay.events import CloudEvent, parse_as, parse_envelope
from leadrelay.logs import event_id_var, lead_id_var
from leadrelay.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True)
class Delivery:
    """A readable record of a type this service handles."""

    record: Record
    event: CloudEvent[Any]
    route: Route[Any]


class Dispatcher:
    """Hands records to their handlers: a whole batch in one transaction, one record at a time on failure.

    The processed-event claims of a batch are made in bulk in the same transaction as the handlers'
    writes, so a redelivered event is a no-op. If the batch fails, it is rolled back and replayed
    record by record, each in its own transaction: a bad record is retried and dead-lettered
    without failing its neighbours. Records keep their order, so one key's events stay in order.
    """

    def __init__(
        self,
        *,
        group: str,
        sessions: SessionFactory,
        handlers: Handlers,
        retry: RetryPolicy,
        dead_letters: DeadLetterPublisher,
        metrics: ServiceMetrics,
        stopping: asyncio.Event,
    ) -> None:
        self._group = group
        self._sessions = sessions
        self._handlers = handlers
        self._retry = retry
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._stopping = stopping

    async def dispatch(self, records: Sequence[Record]) -> int:
        """Handle records in order; returns how many of the first records are done (all, unless stopping)."""
        deliveries: list[Delivery] = []
        for record in records:
            delivery = await self._read(record)
            if delivery is not None:
                deliveries.append(delivery)
        if not deliveries:
            return len(records)
        if len(deliveries) > 1:
            while True:
                try:
                    await self._handle_together(deliveries)
                    return len(records)
                except Exception as exc:
                    if not self._retry.is_outage(exc):
                        logger.info(
                            "batch failed, handling its records one by one",
                            extra={"batch": len(deliveries), "error": type(exc).__name__},
                        )
                        break
                    if not await self._wait_out_outage(exc):
                        return 0
        position = {id(record): index for index, record in enumerate(records)}
        for delivery in deliveries:
            if not await self._handle_alone(delivery):
                # Stopping: this record and everything after it is redelivered after the restart.
                return position[id(delivery.record)]
        return len(records)

    async def _read(self, record: Record) -> Delivery | None:
        # Records that can never be handled are dealt with here, before any transaction.
        raw = record.value or b""
        # The relay names each record's type in the `ce_type` header: a type this service does not
        # handle is skipped unread, and one it handles is parsed once, typed. Without the header,
        # or when the envelope says another type, the envelope decides.
        declared = _header(record, "ce_type")
        if declared is not None:
            fast = self._handlers.route(declared)
            if fast is None:
                self._metrics.events_consumed_total.labels(record.topic, "other", "ignored").inc()
                return None
            with contextlib.suppress(ValidationError):
                event = parse_as(raw, fast.data_type)
                if event.type == declared:
                    return Delivery(record, event, fast)
        try:
            envelope = parse_envelope(raw)
        except ValidationError as exc:
            await self._dead_letters.publish(record, exc, attempts=1)
            return None
        route = self._handlers.route(envelope.type)
        if route is None:
            self._metrics.events_consumed_total.labels(record.topic, "other", "ignored").inc()
            return None
        try:
            event = parse_as(raw, route.data_type)  # the envelope is read: parse once more, typed
        except ValidationError as exc:  # a type we handle with a payload we cannot read: retrying won't help
            await self._dead_letters.publish(record, exc, attempts=1)
            return None
        return Delivery(record, event, route)

    async def _handle_together(self, deliveries: Sequence[Delivery]) -> None:
        async with self._sessions() as session, session.begin():
            outcomes = await self._run(session, deliveries)
        self._count(deliveries, outcomes)

    async def _run(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> list[str]:
        claimed = await idempotency.claim_many(
            session, consumer=self._group, event_ids=[delivery.event.id for delivery in deliveries]
        )
        outcomes = []
        fresh: list[Delivery] = []
        for delivery in deliveries:
            if delivery.event.id in claimed:
                claimed.discard(delivery.event.id)  # a second copy in the same batch is a duplicate
                fresh.append(delivery)
                outcomes.append("processed")
            else:
                outcomes.append("duplicate")
        # Consecutive events of one type form a run, so a batch handler sees many at once in order.
        start = 0
        while start < len(fresh):
            end = start + 1
            while end < len(fresh) and fresh[end].route is fresh[start].route:
                end += 1
            run = fresh[start:end]
            tokens = _log_context(run[0].event) if len(run) == 1 else None
            try:
                await run[0].route.handle([delivery.event for delivery in run], session)
            finally:
                if tokens:
                    _reset_log_context(tokens)
            start = end
        return outcomes

    def _count(self, deliveries: Sequence[Delivery], outcomes: Sequence[str]) -> None:
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            self._metrics.events_consumed_total.labels(delivery.record.topic, delivery.event.type, outcome).inc()

    async def _handle_alone(self, delivery: Delivery) -> bool:
        """Handle one record with retries; False when it was left unhandled because the consumer is stopping."""
        record, event = delivery.record, delivery.event
        tokens = _log_context(event)
        try:
            failures = 0
            while True:
                try:
                    outcome = await self._handle_once(delivery)
                except Exception as exc:
                    self._metrics.events_failed_total.labels(record.topic, event.type).inc()
                    if self._retry.is_outage(exc):
                        if not await self._wait_out_outage(exc):
                            return False
                        continue
                    failures += 1
                    logger.warning(
                        "event handler failed",
                        extra={
                            "attempt": failures,
                            "event_type": event.type,
                            "error": f"{type(exc).__name__}: {describe(exc)}",
                        },
                    )
                    if self._retry.gives_up_after(failures):
                        await self._dead_letters.publish(record, exc, attempts=failures)
                        return True
                    if not await self._wait(self._retry.backoff(failures)):
                        return False  # not dead-lettered on the way out: it is redelivered after the restart
                    continue
                self._count([delivery], [outcome])
                return True
        finally:
            _reset_log_context(tokens)

    async def _handle_once(self, delivery: Delivery) -> str:
        try:
            async with self._sessions() as session, session.begin():
                (outcome,) = await self._run(session, [delivery])
        except IntegrityError:
            async with self._sessions() as session:
                if await idempotency.is_processed(session, consumer=self._group, event_id=delivery.event.id):
                    return "duplicate"  # a concurrent member handled it first
            raise
        return outcome

    async def _wait_out_outage(self, error: BaseException) -> bool:
        # The database is unreachable: not the events' fault, so it never counts toward dead-lettering;
        # the consumer waits (and stays in the group) until it is back. False when stopping meanwhile.
        logger.warning("database unavailable, retrying", extra={"error": type(error).__name__})
        return await self._wait(self._retry.outage_wait_seconds)

    async def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the sleep ran to its end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()


def _header(record: Record, name: str) -> str | None:
    """A record header's value as text, if the record has it."""
    for key, value in record.headers or ():
        if key == name:
            text: str = bytes(value).decode(errors="replace")
            return text
    return None


def _log_context(event: CloudEvent[Any]) -> tuple[Any, Any]:
    return lead_id_var.set(event.subject), event_id_var.set(event.id)


def _reset_log_context(tokens: tuple[Any, Any]) -> None:
    lead_id_var.reset(tokens[0])
    event_id_var.reset(tokens[1])
