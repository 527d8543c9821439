"""The delivery job: sends due deliveries together, records a round's outcomes at once, sleeps until the next is due."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from leadrelay import signing
from leadrelay.db import SessionFactory
from leadrelay.events import utcnow
from leadrelay.outbox import listening
from leadrelay.runtime import ServiceRuntime
from leadrelay.secrets import SecretBox
from leadrelay.service import Job
from router.config import RouterSettings
from router.context import RouterContext
from router.notifications import service
from router.notifications.escalations import SLA_PAYLOAD_TYPES
from router.notifications.metrics import NotificationMetrics
from router.notifications.models import ChannelKind, DeliveryKind, DeliveryStatus
from router.notifications.service import Claimed, Finished
from router.notifications.transport import KeepAliveTransport
from router.notifications.wake import DELIVERIES_CHANNEL
from router.reps.crypto import channel_box
from router.reps.models import Rep

logger = logging.getLogger(__name__)

# Codes a later attempt may get past; any other 4xx refuses the notification for good.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
LEASE_MARGIN_SECONDS = 30.0
"""A claimed delivery is retried this long after its request's timeout if its process died mid-send."""
ROUNDS_IN_FLIGHT = 4
"""Rounds sent at once: the next round is claimed while earlier ones wait for answers."""
_REPS = select(Rep).where(col(Rep.id).in_(bindparam("ids", expanding=True)))
"""A round's reps (their channels), built once as the round's other statements are."""


@dataclass(frozen=True)
class Verdict:
    """What an attempt's answer makes of the delivery."""

    status: DeliveryStatus
    outcome: str
    """The metric's outcome: delivered, retried, dead or disabled."""
    next_attempt_at: datetime | None = None


def verdict(
    *,
    status_code: int | None,
    retry_after: str | None,
    attempts: int,
    created_at: datetime,
    now: datetime,
    settings: RouterSettings,
) -> Verdict:
    """The outcome of an attempt that got `status_code` (None: timeout or connection error)."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict(DeliveryStatus.DELIVERED, "delivered")
    if status_code == 410:
        return Verdict(DeliveryStatus.DISABLED, "disabled")
    retryable = status_code is None or status_code >= 500 or status_code in RETRYABLE_4XX
    if not retryable:
        return Verdict(DeliveryStatus.DEAD, "dead")
    delay = service.retry_after_seconds(retry_after, now=now) if status_code == 429 else None
    if delay is None:
        delay = service.backoff_seconds(
            attempts, base=settings.notify_retry_base_seconds, cap=settings.notify_retry_cap_seconds
        )
    next_attempt_at = now + timedelta(seconds=delay)
    if next_attempt_at > created_at + timedelta(seconds=settings.notify_horizon_seconds):
        return Verdict(DeliveryStatus.DEAD, "dead")
    return Verdict(DeliveryStatus.PENDING, "retried", next_attempt_at)


def slack_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible message (text and blocks) with the notification's context; no links."""
    if body.get("type") in SLA_PAYLOAD_TYPES:
        return sla_slack_message(body)
    lead = body.get("lead") or {}
    name = " ".join(part for part in (lead.get("first_name"), lead.get("last_name")) if part) or lead.get("email")
    company = lead.get("company") or "unknown company"
    grade = body.get("grade") or "ungraded"
    why = f"rule `{body.get('rule')}`" + (f"; {body['mql_reason']}" if body.get("mql_reason") else "")
    if body.get("trigger") not in (None, "routed"):
        why += f"; {body['trigger']}" + (f": {body['reason']}" if body.get("reason") else "")
    account = body.get("account")
    account_text = f"{account['account_id']} ({account['method']})" if account else "none matched"
    sla = body.get("sla")
    deadline = f"{sla['obligation']} due {sla['due_at']}" if sla else "not known yet"
    text = f"New lead for you: {company} (grade {grade}, score {body.get('score')})"
    fields = [
        ("Lead", f"{name}, {lead.get('job_title') or 'no title'}, {lead.get('country') or 'no country'}"),
        ("Grade", f"{grade} (score {body.get('score')}, MQL: {'yes' if body.get('mql') else 'no'})"),
        ("Why you", why),
        ("Account", account_text),
        ("Respond by", deadline),
        ("Lead id", f"`{body.get('lead_id')}`"),
    ]
    return slack_blocks(text, fields)


def slack_blocks(text: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    """A Slack message: `text` as its header and fallback, `fields` as labelled sections."""
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text[:150]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in fields],
            },
        ],
        "unfurl_links": False,
    }


def _when(value: Any) -> str:
    return str(value).replace("T", " ")[:16] + " UTC" if value else "unknown"


def sla_slack_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack message for a warning, reminder or escalation: the obligation, its deadline and the lead; no links."""
    lead = body.get("lead") or {}
    sla = body.get("sla") or {}
    company = lead.get("company") or "unknown company"
    obligation = sla.get("obligation", "an obligation")
    grade = body.get("grade") or "ungraded"
    if body.get("type") == "sla.warning":
        minutes = max(int((sla.get("remaining_seconds") or 0) // 60), 0)
        text = f"Heads-up: {obligation} for {company} is due {_when(sla.get('due_at'))} ({minutes} min left)"
    elif body.get("type") == "sla.reminder":
        text = f"Reminder: {obligation} for {company} was due {_when(sla.get('due_at'))} and is overdue"
    else:
        text = f"Escalation: rep {body.get('rep_id')} missed {obligation} for {company}"
    name = " ".join(part for part in (lead.get("first_name"), lead.get("last_name")) if part) or lead.get("email")
    fields = [
        ("Obligation", f"{obligation} due {_when(sla.get('due_at'))}"),
        ("Rep", f"`{body.get('rep_id')}`" + (f" (team `{body['team_id']}`)" if body.get("team_id") else "")),
        ("Lead", f"{name or 'unknown'}, {lead.get('job_title') or 'no title'}, {company}"),
        ("Grade", f"{grade} (score {body.get('score')})"),
        ("Escalation", ", ".join(sla.get("escalation") or []) or "none"),
        ("Lead id", f"`{body.get('lead_id')}`"),
    ]
    if body.get("type") == "sla.warning":
        fields.pop(4)  # a warning escalates nothing
    return slack_blocks(text, fields)


@dataclass(frozen=True)
class Attempt:
    """One delivery's attempt as sent: what its answer makes of it, and what to record."""

    claimed: Claimed
    verdict: Verdict
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Round:
    """Deliveries claimed together, with their reps and the deadlines to tell."""

    claimed: list[Claimed]
    reps: dict[str, Rep]
    deadlines: dict[str, dict[str, Any]]
    pending: tuple[int, datetime | None] | None = None
    """After a round that emptied the queue: how many deliveries are pending, and when the next is due."""


@dataclass
class Sender:
    """Sends claimed deliveries on the process's one transport; records a round's outcomes in one transaction."""

    sessions: SessionFactory
    context: RouterContext
    metrics: NotificationMetrics
    transport: KeepAliveTransport
    box: SecretBox
    recording: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Rounds in flight record one at a time, so each sees the deliveries the others recorded."""

    @property
    def timeout(self) -> float:
        """Seconds each wait of an attempt may take: for a connection, for the answer."""
        return self.context.settings.notify_timeout_seconds

    async def claim_round(self, *, limit: int, lease_seconds: float) -> "Round":
        """Claim up to `limit` due deliveries and read what sending them needs, in one transaction.

        A round short of `limit` emptied the queue: it also reads what is pending, for the job's sleep.
        """
        async with self.sessions() as session, session.begin():
            claimed = await service.claim_due(session=session, limit=limit, lease_seconds=lease_seconds)
            pending = await service.pending(session=session) if len(claimed) < limit else None
            if not claimed:
                return Round([], {}, {}, pending)
            rep_ids = list({item.rep_id for item in claimed})
            reps = {rep.id: rep for rep in (await session.exec(_REPS, params={"ids": rep_ids})).all()}
            deadlines = await service.deadlines_of(
                session=session, assignment_ids=[item.assignment_id for item in claimed]
            )
        return Round(claimed, reps, deadlines, pending)

    async def deliver_all(self, round_: "Round") -> None:
        """Send a round's deliveries at once, then record every outcome together."""
        attempts = await asyncio.gather(
            *(
                self.attempt(item, round_.reps.get(item.rep_id), round_.deadlines.get(item.assignment_id))
                for item in round_.claimed
            )
        )
        await self._record(list(attempts))

    async def attempt(self, claimed: Claimed, rep: Rep | None, sla: dict[str, Any] | None) -> Attempt:
        """One attempt at one delivery (nothing recorded yet)."""
        channels = rep.channels if rep else []
        channel = channels[claimed.channel_index] if claimed.channel_index < len(channels) else None
        if channel is None or channel.get("disabled") or channel["kind"] != claimed.channel_kind:
            return Attempt(claimed, Verdict(DeliveryStatus.DISABLED, "disabled"), None, "channel disabled or removed")
        # An assignment's notification tells the earliest deadline known when it is sent; the SLA
        # kinds carry the obligation they are about in their payload already.
        body = {**claimed.payload, "sla": sla} if claimed.kind == DeliveryKind.ASSIGNMENT else claimed.payload
        request = self._request(claimed, channel, body)
        if request is None:
            return Attempt(claimed, Verdict(DeliveryStatus.DEAD, "dead"), None, "channel secret unreadable")
        url, content, headers = request
        started = time.perf_counter()
        status_code: int | None = None
        retry_after: str | None = None
        try:
            answer = await self.transport.post(url, body=content, headers=headers, timeout=self.timeout)
            status_code, retry_after = answer.status, answer.header(b"retry-after")
            error = None if 200 <= status_code < 300 else f"HTTP {status_code}"
        except httpx.TimeoutException as exc:
            error = f"timed out ({type(exc).__name__})"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = type(exc).__name__  # the class only: an httpx message can hold the URL
        self.metrics.attempt_seconds.labels(claimed.channel_kind).observe(time.perf_counter() - started)
        judged = verdict(
            status_code=status_code,
            retry_after=retry_after,
            attempts=claimed.attempts,
            created_at=claimed.created_at,
            now=utcnow(),
            settings=self.context.settings,
        )
        return Attempt(claimed, judged, status_code, error)

    def _request(
        self, claimed: Claimed, channel: dict[str, Any], body: dict[str, Any]
    ) -> tuple[str, bytes, dict[str, str]] | None:
        if claimed.channel_kind == ChannelKind.SLACK:
            url = self.box.decrypt(channel["url"])
            if url is None:
                return None
            return url, orjson.dumps(slack_message(body)), {"content-type": "application/json"}
        secret = self.box.decrypt(channel["secret"])
        if secret is None:
            return None
        # orjson: the json module took a twentieth of the router's CPU at 200 leads/s encoding these.
        content = orjson.dumps(body)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": claimed.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.standard(secret, msg_id=claimed.webhook_id, timestamp=timestamp, body=content),
        }
        return channel["url"], content, headers

    async def _record(self, attempts: list[Attempt]) -> None:
        # One transaction for the round, one round at a time, outcomes counted in turn: of an
        # assignment's channels delivered, in this round or another, exactly one is seen as its first.
        recorded: list[tuple[Attempt, bool]] = []
        async with self.recording, self.sessions() as session, session.begin():
            told = await service.already_delivered(
                session=session,
                assignment_ids=[
                    attempt.claimed.assignment_id
                    for attempt in attempts
                    if attempt.verdict.status is DeliveryStatus.DELIVERED
                    and attempt.claimed.kind == DeliveryKind.ASSIGNMENT
                ],
            )
            kept = await service.finish_round(
                session=session,
                outcomes=[
                    Finished(
                        attempt.claimed,
                        attempt.verdict.status,
                        attempt.status_code,
                        attempt.error,
                        attempt.verdict.next_attempt_at,
                    )
                    for attempt in attempts
                ],
            )
            for attempt in attempts:
                claimed, judged = attempt.claimed, attempt.verdict
                if claimed.id not in kept:
                    continue  # another attempt owns the row now
                first = False
                if judged.status is DeliveryStatus.DELIVERED and claimed.kind == DeliveryKind.ASSIGNMENT:
                    first = claimed.assignment_id not in told
                    told.add(claimed.assignment_id)
                if judged.status is DeliveryStatus.DISABLED and attempt.status_code == 410:
                    await service.disable_channel(
                        session=session,
                        rep_id=claimed.rep_id,
                        channel_index=claimed.channel_index,
                        delivery_id=claimed.id,
                    )
                recorded.append((attempt, first))
        for attempt, first in recorded:
            self._count(attempt, first=first)

    def _count(self, attempt: Attempt, *, first: bool) -> None:
        claimed, judged = attempt.claimed, attempt.verdict
        self.metrics.notifications_total.labels(claimed.channel_kind, judged.outcome).inc()
        if first and claimed.received_at is not None:
            self.metrics.speed_to_lead_seconds.observe(max((utcnow() - claimed.received_at).total_seconds(), 0.0))
        if judged.status in (DeliveryStatus.DEAD, DeliveryStatus.DISABLED):
            logger.warning(
                "notification given up",
                extra={
                    "delivery_id": claimed.id,
                    "rep_id": claimed.rep_id,
                    "channel": claimed.channel_kind,
                    "status": judged.status.value,
                    "status_code": attempt.status_code,
                    "attempts": claimed.attempts,
                },
            )


def delivery_transport(settings: RouterSettings) -> KeepAliveTransport:
    """The process's one transport for notifications: as many connections as a round sends at once."""
    # Beyond httpx's default 20, every round would open and close the rest again; transport.py says
    # why the job posts through a transport of its own, without httpx's client.
    return KeepAliveTransport(connections=settings.notify_concurrency)


async def run_deliveries(
    *, sessions: SessionFactory, context: RouterContext, metrics: NotificationMetrics, engine: AsyncEngine | None = None
) -> None:
    """Send due deliveries until cancelled; between batches, sleep until the next is due or the job is woken.

    With `engine` on PostgreSQL, deliveries any replica commits wake the job too (LISTEN).
    """
    async with listening(engine, context.deliveries.wake, channel=DELIVERIES_CHANNEL):
        context.deliveries.leading = True  # this process's commits need not NOTIFY the others meanwhile
        try:
            await _deliver_until_cancelled(sessions=sessions, context=context, metrics=metrics)
        finally:
            context.deliveries.leading = False


async def _deliver_until_cancelled(
    *, sessions: SessionFactory, context: RouterContext, metrics: NotificationMetrics
) -> None:
    settings = context.settings
    wake = context.deliveries.event
    lease = settings.notify_timeout_seconds + LEASE_MARGIN_SECONDS
    async with delivery_transport(settings) as transport:
        sender = Sender(sessions, context, metrics, transport, channel_box(settings.secret_key.get_secret_value()))
        async with RoundsInFlight(ROUNDS_IN_FLIGHT) as rounds:
            while True:
                await rounds.room()
                wake.clear()  # before looking, so a commit made while we look wakes the next wait
                claimed = await sender.claim_round(limit=settings.notify_concurrency, lease_seconds=lease)
                if claimed.claimed:
                    rounds.start(sender.deliver_all(claimed))
                if claimed.pending is None:
                    continue  # a full round: more may be due right now
                # The queue is drained: sleep until a commit wakes us or the next delivery is due, rather
                # than claiming round after round of one or two.
                count, next_due = claimed.pending
                metrics.pending.set(count)
                # Bounded: on SQLite, deliveries another process committed wake no one here.
                delay = settings.notify_max_sleep_seconds
                if next_due is not None:
                    delay = min(delay, (next_due - utcnow()).total_seconds())
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await wake.wait()


class RoundsInFlight:
    """Up to `limit` rounds sending at once; a round that fails fails the job (its supervisor restarts it)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "RoundsInFlight":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for task in self._tasks:
            task.cancel()  # their claims lapse after the lease and are sent again
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Send a round in the background."""
        self._tasks.add(asyncio.create_task(work))

    async def room(self) -> None:
        """Wait until fewer than `limit` rounds are in flight; raise what a finished round raised."""
        while True:
            for task in [task for task in self._tasks if task.done()]:
                self._tasks.discard(task)
                task.result()
            if len(self._tasks) < self._limit:
                return
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)


def delivery_job(context: RouterContext, metrics: NotificationMetrics) -> Job[RouterSettings]:
    """The delivery job bound to this app's context and metrics (it runs on one leader among the replicas)."""

    async def deliver_notifications(runtime: ServiceRuntime[RouterSettings]) -> None:
        """Send due deliveries until cancelled."""
        await run_deliveries(sessions=runtime.sessions, context=context, metrics=metrics, engine=runtime.engine)

    return deliver_notifications
