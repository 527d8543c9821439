"""Deliveries: created with the assignment, in its transaction; sent by the delivery job (see jobs.py).

`enqueue` is called by every code path that creates an assignment to a rep (first routing,
reassignment), in the same transaction; SLA warnings and escalations add deliveries of their own
kinds (escalations.py). The job claims due rows, sends them and records each outcome here; a row
marked delivered is never claimed again.
"""

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import bindparam, func, insert, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import audit
from leadrelay.db import new_row, per_dialect
from leadrelay.events import LeadScored, SlaStarted, utcnow
from router.assignments import service as assignments
from router.assignments.models import Assignment, Outcome
from router.config import RouterSettings
from router.notifications.models import Delivery, DeliveryKind, DeliveryStatus, SlaDeadline
from router.reps.models import Rep

if TYPE_CHECKING:
    from router.context import RouterContext

PAYLOAD_TYPE = "lead.assigned"
DEFAULT_SLA_WAIT_SECONDS: float = RouterSettings.model_fields["notify_sla_wait_seconds"].default
# Lead fields left out of a notification: bookkeeping, not something a rep acts on.
_LEAD_EXCLUDED = {"lead_id", "redrive"}


class PayloadSla(BaseModel):
    """The payload's `sla`: the assignment's earliest deadline the sla-monitor started."""

    obligation: str
    due_at: datetime
    started_at: datetime


def webhook_id(assignment_id: str, channel_index: int) -> str:
    """The stable `webhook-id` of an assignment's notification to one channel."""
    return f"msg_{assignment_id}_{channel_index}"


def payload_of(assignment: Assignment, scored: LeadScored, *, previous: Assignment | None) -> dict[str, Any]:
    """The notification body: the assignment as lead.assigned has it, with the lead, score and account."""
    announced = assignments.announcement(assignment, scored, previous=previous).model_dump(mode="json")
    return {
        "type": PAYLOAD_TYPE,
        **announced,
        "rule": assignment.rule_path[-1] if assignment.rule_path else None,
        "lead": {"id": scored.lead_id, **scored.lead.model_dump(mode="json", exclude=_LEAD_EXCLUDED)},
        "score": scored.score,
        "mql_reason": scored.mql_reason,
        "account": None if scored.account is None else scored.account.model_dump(mode="json"),
        "sla": None,
    }


async def enqueue(
    *,
    session: AsyncSession,
    assigned: Sequence[tuple[Assignment, LeadScored | None]],
    context: "RouterContext | None" = None,
    reps: Mapping[str, Rep] | None = None,
) -> None:
    """One pending delivery per channel of each assignment's rep (queued and nurtured decisions have none).

    A delivery waits up to NOTIFY_SLA_WAIT_SECONDS for the assignment's SLA deadline (sla.started
    brings it forward at once). With the context, the delivery job is woken once this commits.
    `reps`: the roster's reps, when the caller routed from a roster read in this transaction.
    """
    to_rep = [
        (assignment, scored)
        for assignment, scored in assigned
        if assignment.outcome == Outcome.ASSIGNED and assignment.rep_id is not None
    ]
    if not to_rep:
        return
    if reps is None:
        rep_ids = list({assignment.rep_id for assignment, _ in to_rep})
        reps = {rep.id: rep for rep in (await session.exec(select(Rep).where(col(Rep.id).in_(rep_ids)))).all()}
    sla_wait = context.settings.notify_sla_wait_seconds if context else DEFAULT_SLA_WAIT_SECONDS
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for assignment, scored in to_rep:
        rep = reps.get(assignment.rep_id or "")
        channels = [
            (index, channel) for index, channel in enumerate(rep.channels if rep else []) if not channel.get("disabled")
        ]
        if not channels:
            continue
        scored = scored or await assignments.get_routed(session=session, lead_id=assignment.lead_id)
        if scored is None:
            continue  # never scored here: nothing to tell the rep about
        previous = None
        if assignment.previous_assignment_id is not None:
            previous = await session.get(Assignment, assignment.previous_assignment_id)
        payload = payload_of(assignment, scored, previous=previous)
        rows.extend(
            new_row(
                Delivery,
                webhook_id=webhook_id(assignment.id, index),
                assignment_id=assignment.id,
                lead_id=assignment.lead_id,
                rep_id=assignment.rep_id or "",
                channel_index=index,
                channel_kind=channel["kind"],
                payload=payload,
                received_at=scored.lead.received_at,
                next_attempt_at=now + timedelta(seconds=sla_wait),
                created_at=now,
                updated_at=now,
            )
            for index, channel in channels
        )
    if not rows:
        return
    # Plain rows and one prepared INSERT for them all: a Delivery object per row cost more than its insert.
    await (await session.connection()).execute(_INSERT_DELIVERY, rows)
    if context is not None:
        context.deliveries.on_commit(session)


_INSERT_DELIVERY = insert(Delivery)


async def record_deadlines(*, session: AsyncSession, started: Sequence[SlaStarted]) -> int:
    """Keep each assignment's deadlines; deliveries still waiting for one become due now. Returns how many did."""
    now = utcnow()
    rows = [
        {
            "assignment_id": item.assignment_id,
            "obligation": item.obligation,
            "lead_id": item.lead_id,
            "due_at": item.due_at,
            "started_at": item.started_at,
            "created_at": now,
        }
        for item in started
    ]
    connection = await session.connection()
    if rows:
        await connection.execute(_KEEP_DEADLINE[connection.dialect.name], rows)
    assignment_ids = list({item.assignment_id for item in started})
    result = await connection.execute(_DUE_NOW, {"assignment_ids": assignment_ids, "now": now})
    return int(result.rowcount or 0)


def _keep_deadline(dialect: Any) -> Any:
    statement = dialect.insert(SlaDeadline)
    return statement.on_conflict_do_update(
        index_elements=[col(SlaDeadline.assignment_id), col(SlaDeadline.obligation)],
        set_={name: statement.excluded[name] for name in ("lead_id", "due_at", "started_at")},
    )


# Built once, run with the values as parameters: built per call, each was cache-keyed and its
# parameters matched up again, about as costly as running it.
_KEEP_DEADLINE = per_dialect(_keep_deadline)
_DUE_NOW = (
    update(Delivery)
    .where(col(Delivery.assignment_id).in_(bindparam("assignment_ids", expanding=True)))
    .where(col(Delivery.kind) == DeliveryKind.ASSIGNMENT)
    .where(col(Delivery.status) == DeliveryStatus.PENDING)
    .where(col(Delivery.attempts) == 0)
    .where(col(Delivery.next_attempt_at) > bindparam("now"))
    .values(next_attempt_at=bindparam("now"), updated_at=bindparam("now"))
)
"""Deliveries of these assignments still waiting for their deadline become due `now`."""


async def deadline_of(*, session: AsyncSession, assignment_id: str) -> dict[str, Any] | None:
    """The assignment's earliest known SLA deadline, as the payload's `sla`."""
    query = select(SlaDeadline).where(SlaDeadline.assignment_id == assignment_id).order_by(col(SlaDeadline.due_at))
    deadline = (await session.exec(query)).first()
    if deadline is None:
        return None
    return PayloadSla.model_validate(deadline, from_attributes=True).model_dump(mode="json")


async def deadlines_of(*, session: AsyncSession, assignment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each assignment's earliest known SLA deadline, as the payload's `sla`, in one query."""
    earliest: dict[str, dict[str, Any]] = {}
    for deadline in (await session.exec(_DEADLINES, params={"ids": list(assignment_ids)})).all():
        if deadline.assignment_id not in earliest:
            earliest[deadline.assignment_id] = PayloadSla.model_validate(deadline, from_attributes=True).model_dump(
                mode="json"
            )
    return earliest


_DEADLINES = (
    select(SlaDeadline)
    .where(col(SlaDeadline.assignment_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(SlaDeadline.due_at))
)


async def get_deliveries(*, session: AsyncSession, lead_id: str) -> list[Delivery]:
    """A lead's deliveries, oldest first."""
    query = (
        select(Delivery)
        .where(Delivery.lead_id == lead_id)
        .order_by(col(Delivery.created_at), col(Delivery.assignment_id), col(Delivery.channel_index))
    )
    return list((await session.exec(query)).all())


# Claiming and outcomes.


def backoff_seconds(attempts: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(attempts - 1))] after the attempts made so far."""
    ceiling = min(cap, base * float(2 ** min(max(attempts - 1, 0), 62)))
    return ceiling * rand()


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt: what the job needs to send it."""

    id: str
    webhook_id: str
    assignment_id: str
    rep_id: str
    channel_index: int
    channel_kind: str
    kind: str
    attempts: int
    """Attempts including this one: the outcome is recorded only if the row is still at this attempt."""
    payload: dict[str, Any]
    received_at: datetime | None
    created_at: datetime


async def claim_due(*, session: AsyncSession, limit: int, lease_seconds: float) -> list[Claimed]:
    """Take up to `limit` due deliveries for one attempt each; a row is due again only after the lease.

    The conditional update is the claim: of two processes reading the same row, only one moves it,
    and a process that dies mid-send leaves the row to be retried when the lease ends.
    """
    now = utcnow()
    connection = await session.connection()  # Core: the session holds none of these rows
    ids = list((await connection.execute(_DUE, {"now": now, "limit": limit})).scalars().all())
    if not ids:
        return []
    lease_until = now + timedelta(seconds=lease_seconds)
    rows = (await connection.execute(_CLAIM, {"ids": ids, "now": now, "lease_until": lease_until})).all()
    return sorted((Claimed(*row) for row in rows), key=lambda item: (item.created_at, item.id))


_CLAIMED_COLUMNS = tuple(
    col(column)
    for column in (
        Delivery.id,
        Delivery.webhook_id,
        Delivery.assignment_id,
        Delivery.rep_id,
        Delivery.channel_index,
        Delivery.channel_kind,
        Delivery.kind,
        Delivery.attempts,
        Delivery.payload,
        Delivery.received_at,
        Delivery.created_at,
    )
)
"""Delivery's columns in the order of `Claimed`'s fields."""

# The statements of the delivery job's every round, built once with their values as parameters: built
# per call, their column comparisons and IN lists took more than a third of a one-delivery round's CPU.
_DUE = (
    select(Delivery.id)
    .where(col(Delivery.status) == DeliveryStatus.PENDING, col(Delivery.next_attempt_at) <= bindparam("now"))
    .order_by(col(Delivery.next_attempt_at))
    .limit(bindparam("limit"))
)
# The ids as values, not as a subquery: given a subquery, SQLite found the rows to update through
# the status index and tested every pending row against it. The conditions are checked again on
# each row as it is updated: that is the claim.
_CLAIM = (
    update(Delivery)
    .where(col(Delivery.id).in_(bindparam("ids", expanding=True)))
    .where(col(Delivery.status) == DeliveryStatus.PENDING, col(Delivery.next_attempt_at) <= bindparam("now"))
    .values(
        attempts=col(Delivery.attempts) + 1,
        next_attempt_at=bindparam("lease_until"),
        updated_at=bindparam("now"),
    )
    .returning(*_CLAIMED_COLUMNS)
)


@dataclass(frozen=True)
class Finished:
    """An attempt's outcome to record: the delivery as claimed, its new status and what the channel answered."""

    claimed: Claimed
    status: DeliveryStatus
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None = None


async def finish_round(*, session: AsyncSession, outcomes: Sequence[Finished]) -> set[str]:
    """Record attempts' outcomes, each only if its row is still at that attempt; the ids of those recorded.

    Outcomes alike (most often a whole round answered 2xx) are one UPDATE: a statement per delivery
    cost more than the rest of recording it.
    """
    now = utcnow()
    alike: dict[tuple[DeliveryStatus, int | None, str | None, datetime | None], list[Claimed]] = {}
    for outcome in outcomes:
        key = (outcome.status, outcome.status_code, outcome.error, outcome.next_attempt_at)
        alike.setdefault(key, []).append(outcome.claimed)
    kept: set[str] = set()
    connection = await session.connection()  # Core: the session holds none of these rows
    for (status, status_code, error, next_attempt_at), claimed in alike.items():
        statement = _FINISH[(status is DeliveryStatus.DELIVERED, next_attempt_at is not None)]
        # Named apart from the columns: a parameter named after a column would be set as well.
        values = {"at_attempt": [(item.id, item.attempts) for item in claimed], "new_status": status,
                  "code": status_code, "error": error, "now": now, "retry_at": next_attempt_at}  # fmt: skip
        kept.update((await connection.execute(statement, values)).scalars().all())
    return kept


def _finish(*, delivered: bool, rescheduled: bool) -> Any:
    """The UPDATE recording outcomes alike; it sets `delivered_at` and `next_attempt_at` only when asked."""
    values: dict[str, Any] = {
        "status": bindparam("new_status"),
        "last_status_code": bindparam("code"),
        "last_error": bindparam("error"),
        "updated_at": bindparam("now"),
    }
    if delivered:
        values["delivered_at"] = bindparam("now")
    if rescheduled:
        values["next_attempt_at"] = bindparam("retry_at")
    at_attempt = tuple_(col(Delivery.id), col(Delivery.attempts)).in_(bindparam("at_attempt", expanding=True))
    return (
        update(Delivery)
        .where(col(Delivery.status) == DeliveryStatus.PENDING, at_attempt)
        .values(**values)
        .returning(col(Delivery.id))
    )


_FINISH = {
    (delivered, rescheduled): _finish(delivered=delivered, rescheduled=rescheduled)
    for delivered in (False, True)
    for rescheduled in (False, True)
}
"""By (delivered, rescheduled): each is recorded only if its row is still at that attempt."""


async def already_delivered(*, session: AsyncSession, assignment_ids: Sequence[str]) -> set[str]:
    """Those of the assignments with one of their own notifications delivered already."""
    if not assignment_ids:
        return set()
    connection = await session.connection()
    return set((await connection.execute(_DELIVERED, {"ids": list(assignment_ids)})).scalars().all())


_DELIVERED = (
    select(Delivery.assignment_id)
    .where(col(Delivery.assignment_id).in_(bindparam("ids", expanding=True)))
    .where(col(Delivery.status) == DeliveryStatus.DELIVERED, col(Delivery.kind) == DeliveryKind.ASSIGNMENT)
    .distinct()
)


async def disable_channel(*, session: AsyncSession, rep_id: str, channel_index: int, delivery_id: str) -> None:
    """Mark a rep's channel disabled after a 410 (audited, by no key); it gets no new deliveries."""
    rep = await session.get(Rep, rep_id, with_for_update=True, populate_existing=True)
    if rep is None or channel_index >= len(rep.channels) or rep.channels[channel_index].get("disabled"):
        return
    channels = [dict(channel) for channel in rep.channels]
    channels[channel_index]["disabled"] = True
    rep.channels = channels  # a new list, so the JSON column is written
    rep.version += 1
    rep.updated_at = utcnow()
    session.add(rep)
    audit.record(
        session,
        actor=None,
        action="rep.channel_disabled",
        target=rep_id,
        detail={
            "channel": channel_index,
            "kind": channels[channel_index]["kind"],
            "delivery_id": delivery_id,
            "reason": "410 Gone",
        },
    )


async def pending(*, session: AsyncSession) -> tuple[int, datetime | None]:
    """How many deliveries are not yet delivered, dead or disabled, and when the earliest of them is due."""
    count, next_due = (await (await session.connection()).execute(_PENDING)).one()
    return int(count), next_due


_PENDING = select(func.count(), func.min(Delivery.next_attempt_at)).where(
    col(Delivery.status) == DeliveryStatus.PENDING
)
