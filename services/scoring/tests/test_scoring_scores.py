"""The scores pipeline through its handlers: the active ICP, engagements, one MQL transition, re-scoring runs."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlmodel import select

from leadrelay.agreements.models import AgreementHead, AgreementVersion, VersionStatus
from leadrelay.events import (
    AccountChanged,
    AgreementActivated,
    CloudEvent,
    LeadActivity,
    LeadReceived,
    LeadScored,
    ScoreCriterion,
    ScoreTrigger,
    new_event,
    parse_as,
    utcnow,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.runtime import ServiceRuntime
from leadrelay.stages import ActivityType, LeadStage
from leadrelay.testing import Storage, migrated, wait_until
from scoring.accounts.handlers import on_account_changed
from scoring.config import ScoringSettings
from scoring.icp.document import ICP
from scoring.icp.engine import DEFAULT_VERSION, CompiledIcp, Engagement, Evaluation
from scoring.main import MIGRATIONS_DIR
from scoring.scores import handlers, service
from scoring.scores.handlers import ScoringContext
from scoring.scores.jobs import rescore_next_chunk
from scoring.scores.metrics import ScoringMetrics
from scoring.scores.models import LeadEngagement, LeadScore, RescoreRun

DatabaseFactory = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class PointsIcp:
    """A stand-in ICP: 40 fit points for a British lead, 30 per engagement, MQL at `line` points."""

    version: str
    line: int = 60

    def evaluate(self, facts: Mapping[str, Any], engagements: Sequence[Engagement], *, now: datetime) -> Evaluation:
        fit = 40 if facts.get("country") == "GB" else 0
        engagement = 30 * len(engagements)
        mql = fit + engagement >= self.line
        criteria = [
            ScoreCriterion(criterion="british", points=fit, reason="country GB" if fit else "not GB"),
            ScoreCriterion(criterion="engaged", points=engagement, reason=f"{len(engagements)} engagements"),
        ]
        grade = f"{'B' if fit else 'D'}{max(1, 4 - len(engagements))}"
        return Evaluation(fit, engagement, grade[0], int(grade[1]), mql, f"{fit + engagement} >= {self.line}", criteria)


@dataclass
class FixedIcps(service.IcpVersions):
    """ICP versions chosen by the test instead of read from signed agreements."""

    active_version: int = 1
    versions: dict[int, PointsIcp] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    async def active(self, session: Any) -> CompiledIcp:
        return cast(CompiledIcp, self.versions[self.active_version])

    async def version(self, session: Any, version: int) -> CompiledIcp:
        return cast(CompiledIcp, self.versions[version])


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """Scoring's schema, by its own migrations, on the test's backend."""
    async with migrated(database_url, MIGRATIONS_DIR) as storage:
        yield storage


def _context(**settings: Any) -> ScoringContext:
    values = ScoringSettings(rescore_chunk=2, **settings)
    return ScoringContext(values, ScoringMetrics(CollectorRegistry(), sources=values.scoring_sources))


def _lead(lead_id: str, *, country: str = "GB", received_at: datetime | None = None) -> CloudEvent[LeadReceived]:
    lead = LeadReceived(
        lead_id=lead_id,
        email=f"{lead_id}@analytical.example",
        company="Analytical Engines",
        country=country,
        source="webinar",
        received_at=received_at or utcnow(),
    )
    return new_event(lead, source="test")


def _activity(lead_id: str, activity: ActivityType, stage: LeadStage | None = None) -> CloudEvent[LeadActivity]:
    data = LeadActivity(lead_id=lead_id, rep_id="", activity=activity, occurred_at=utcnow(), stage=stage)
    return new_event(data, source="test")


async def _handle(storage: Storage, handler: Any, events: Sequence[CloudEvent[Any]], context: ScoringContext) -> None:
    async with storage.sessions() as session, session.begin():
        await handler(events, session, context=context)


async def _published(storage: Storage) -> list[LeadScored]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()  # type: ignore[arg-type]
    return [parse_as(row.payload, LeadScored).data for row in rows if row.event_type == "lead.scored"]


async def _score(storage: Storage, lead_id: str) -> LeadScore:
    async with storage.sessions() as session:
        record = await session.get(LeadScore, lead_id)
    assert record is not None
    return record


def _sample(context: ScoringContext, name: str, **labels: str) -> float:
    return context.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_without_a_signed_icp_leads_are_scored_under_the_default(storage: Storage) -> None:
    context = _context()
    await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)

    (scored,) = await _published(storage)
    assert (scored.lead_id, scored.icp_version, scored.trigger) == ("lead-1", DEFAULT_VERSION, ScoreTrigger.RECEIVED)
    assert scored.lead.email == "lead-1@analytical.example"
    assert scored.grade is not None
    assert scored.account is None
    record = await _score(storage, "lead-1")
    assert (record.source, record.facts["country"], record.lead["lead_id"]) == ("webinar", "GB", "lead-1")
    assert _sample(context, "leadrelay_account_matches_total", method="none") == 1
    assert _sample(context, "leadrelay_leads_scored_total", grade=scored.grade, mql=str(scored.mql).lower()) == 1


async def test_the_active_version_is_read_from_the_agreement_head_and_compiled_once(storage: Storage) -> None:
    icps = service.IcpVersions()
    async with storage.sessions() as session, session.begin():
        for version in (1, 2):
            session.add(
                AgreementVersion(
                    kind="icp",
                    version=version,
                    status=VersionStatus.DRAFT,
                    document=ICP.example,
                    required={},
                    author_key_id="key_test",
                    author_name="test",
                    author_team="marketing",
                )
            )
        session.add(AgreementHead(kind="icp", latest_version=2, active_version=1))
    async with storage.sessions() as session:
        first = await icps.active(session)
        assert first.version == "1"
        assert await icps.active(session) is first
    async with storage.sessions() as session, session.begin():
        head = await session.get(AgreementHead, "icp")
        assert head is not None
        head.active_version = 2  # activated by another replica
        session.add(head)
    async with storage.sessions() as session:
        assert (await icps.active(session)).version == "2"


async def test_an_engagement_crossing_the_line_makes_one_mql_across_redeliveries_and_later_scores(
    storage: Storage,
) -> None:
    context = _context()
    context.icps = icps = FixedIcps(versions={1: PointsIcp("1"), 2: PointsIcp("2", line=1000)})
    await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)
    assert (await _score(storage, "lead-1")).mql is False

    demo = _activity("lead-1", ActivityType.DEMO_REQUESTED)
    await _handle(storage, handlers.on_lead_activity, [demo], context)
    crossed = await _score(storage, "lead-1")
    assert (crossed.mql, crossed.stage, crossed.engagement) == (True, LeadStage.MQL, 30)
    assert crossed.mql_at is not None

    await _handle(storage, handlers.on_lead_activity, [demo, demo], context)  # redelivered, twice in a batch
    await _handle(storage, handlers.on_lead_activity, [_activity("lead-1", ActivityType.EMAIL_CLICKED)], context)
    await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)  # re-driven
    icps.active_version = 2  # a stricter ICP: the grade may change, the MQL stays
    await _handle(storage, handlers.on_lead_activity, [_activity("lead-1", ActivityType.WEBINAR_ATTENDED)], context)

    published = await _published(storage)
    assert [s.trigger for s in published] == [
        ScoreTrigger.RECEIVED, ScoreTrigger.ENGAGEMENT, ScoreTrigger.ENGAGEMENT, ScoreTrigger.RECEIVED,
        ScoreTrigger.ENGAGEMENT,
    ]  # fmt: skip
    assert [s.became_mql for s in published] == [False, True, False, False, False]
    assert [s.mql for s in published] == [False, True, True, True, True]
    assert [s.engagement for s in published] == [0, 30, 60, 60, 90]
    last = published[-1]
    assert (last.icp_version, last.stage, last.mql_reason) == ("2", LeadStage.MQL, "70 >= 60")
    final = await _score(storage, "lead-1")
    assert final.mql_at == crossed.mql_at
    async with storage.sessions() as session:
        assert len((await session.exec(select(LeadEngagement))).all()) == 3
    assert _sample(context, "leadrelay_mql_transitions_total", source="webinar") == 1


async def test_a_lead_with_sales_keeps_its_stage_and_rep_activity_publishes_nothing(storage: Storage) -> None:
    context = _context()
    context.icps = FixedIcps(versions={1: PointsIcp("1", line=100)})
    await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)
    await _handle(
        storage, handlers.on_lead_activity, [_activity("lead-1", ActivityType.ACCEPTED, LeadStage.SAL)], context
    )
    assert len(await _published(storage)) == 1
    assert (await _score(storage, "lead-1")).stage == LeadStage.SAL

    engaged = [_activity("lead-1", ActivityType.DEMO_REQUESTED), _activity("lead-1", ActivityType.WEBINAR_ATTENDED)]
    await _handle(storage, handlers.on_lead_activity, engaged, context)

    scored = (await _published(storage))[-1]
    assert (scored.stage, scored.mql, scored.became_mql, scored.engagement) == (LeadStage.SAL, True, True, 60)
    assert (await _score(storage, "lead-1")).stage == LeadStage.SAL


async def test_an_engagement_before_its_lead_counts_when_the_lead_arrives(storage: Storage) -> None:
    context = _context()
    context.icps = FixedIcps(versions={1: PointsIcp("1")})
    await _handle(storage, handlers.on_lead_activity, [_activity("lead-1", ActivityType.PRICING_PAGE_VIEWED)], context)
    assert await _published(storage) == []

    await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)

    (scored,) = await _published(storage)
    assert (scored.engagement, scored.mql, scored.became_mql, scored.stage) == (30, True, True, LeadStage.MQL)


async def test_a_batch_of_new_and_known_leads_keeps_each_known_leads_mql_and_stage(storage: Storage) -> None:
    context = _context()
    context.icps = FixedIcps(versions={1: PointsIcp("1")})
    account = AccountChanged(
        account_id="acc-1",
        name="Analytical Engines Ltd",
        domains=["analytical.example"],
        industry="software",
        employees=300,
        owner_rep_id="rep-7",
        changed_at=utcnow(),
    )
    async with storage.sessions() as session, session.begin():
        await on_account_changed([new_event(account, source="test")], session)
    await _handle(storage, handlers.on_lead_received, [_lead("lead-mql"), _lead("lead-sal", country="FR")], context)
    await _handle(storage, handlers.on_lead_activity, [_activity("lead-mql", ActivityType.DEMO_REQUESTED)], context)
    await _handle(
        storage, handlers.on_lead_activity, [_activity("lead-sal", ActivityType.ACCEPTED, LeadStage.SAL)], context
    )
    await _handle(
        storage, handlers.on_lead_activity, [_activity("lead-engaged", ActivityType.WEBINAR_ATTENDED)], context
    )
    crossed = await _score(storage, "lead-mql")
    before = len(await _published(storage))

    batch = [_lead("lead-new"), _lead("lead-mql"), _lead("lead-sal", country="FR"), _lead("lead-engaged")]
    batch.append(_lead("lead-new"))  # twice in one batch: stored once, each lead.scored carries its own lead
    await _handle(storage, handlers.on_lead_received, batch, context)

    published = (await _published(storage))[before:]
    assert [s.lead_id for s in published] == [e.data.lead_id for e in batch]
    assert [s.lead for s in published] == [e.data for e in batch]
    assert {s.trigger for s in published} == {ScoreTrigger.RECEIVED}
    assert [s.stage for s in published] == [LeadStage.LEAD, LeadStage.MQL, LeadStage.SAL, LeadStage.MQL, LeadStage.LEAD]
    assert [s.mql for s in published] == [False, True, False, True, False]
    assert [s.became_mql for s in published] == [False, False, False, True, False]
    assert [s.engagement for s in published] == [0, 30, 0, 30, 0]
    new = published[0]
    assert new.account is not None
    assert (new.account.account_id, new.account.owner_rep_id, new.account.confidence) == ("acc-1", "rep-7", 1.0)
    assert new.enriched_fields == ["industry", "employees"]
    assert [criterion.criterion for criterion in new.explanation] == ["british", "engaged"]

    known = await _score(storage, "lead-mql")
    assert (known.mql, known.mql_at, known.stage, known.mql_reason) == (True, crossed.mql_at, LeadStage.MQL, "70 >= 60")
    assert known.lead["lead_id"] == "lead-mql"
    assert (await _score(storage, "lead-sal")).stage == LeadStage.SAL
    stored = await _score(storage, "lead-new")
    assert (stored.account_id, stored.match_method, stored.enriched_fields) == ("acc-1", "domain", new.enriched_fields)
    assert stored.facts["industry"] == "software"
    assert stored.lead == batch[-1].data.model_dump(mode="json")
    async with storage.sessions() as session:
        assert len((await session.exec(select(LeadScore))).all()) == 4


async def test_an_activation_rescores_open_leads_in_chunks_and_a_newer_one_supersedes_it(storage: Storage) -> None:
    context = _context()
    context.icps = icps = FixedIcps(
        versions={1: PointsIcp("1", line=100), 2: PointsIcp("2", line=40), 3: PointsIcp("3")}
    )
    now = utcnow()
    open_leads = [_lead(f"lead-{n}", country="GB" if n % 2 else "FR") for n in range(1, 6)]
    old = _lead("lead-old", received_at=now - timedelta(days=31))
    await _handle(storage, handlers.on_lead_received, [*open_leads, old, _lead("lead-sal")], context)
    await _handle(
        storage, handlers.on_lead_activity, [_activity("lead-sal", ActivityType.ACCEPTED, LeadStage.SAL)], context
    )
    before = len(await _published(storage))
    runtime = cast(
        ServiceRuntime[ScoringSettings], SimpleNamespace(sessions=storage.sessions, settings=context.settings)
    )

    activated = new_event(AgreementActivated(kind="icp", version=2, status="active", at=now), source="test")
    other_kind = new_event(AgreementActivated(kind="routing", version=7, status="active", at=now), source="test")
    await _handle(storage, handlers.on_agreement_activated, [other_kind, activated], context)
    await _handle(storage, handlers.on_agreement_activated, [activated], context)  # seen twice: one run
    assert context.rescore_wanted.is_set()

    assert await rescore_next_chunk(runtime, context)
    assert _sample(context, "leadrelay_rescore_leads_remaining") == 3
    assert _sample(context, "leadrelay_leads_rescored_total") == 2
    while await rescore_next_chunk(runtime, context):
        pass

    rescored = (await _published(storage))[before:]
    assert [s.lead_id for s in rescored] == [f"lead-{n}" for n in range(1, 6)]
    assert {s.trigger for s in rescored} == {ScoreTrigger.ICP_ACTIVATED}
    assert [s.became_mql for s in rescored] == [True, False, True, False, True]
    assert _sample(context, "leadrelay_rescore_leads_remaining") == 0
    assert _sample(context, "leadrelay_leads_rescored_total") == 5
    assert _sample(context, "leadrelay_mql_transitions_total", source="webinar") == 3
    async with storage.sessions() as session:
        (run,) = (await session.exec(select(RescoreRun))).all()
    assert (run.icp_version, run.total, run.done, run.cursor, run.superseded) == (2, 5, 5, "lead-5", False)
    assert run.finished_at is not None

    # v3 and v4 activated before the job ran again: v4's run supersedes v3's, which is never worked
    icps.versions[4] = PointsIcp("4")
    for version in (3, 4):
        data = AgreementActivated(kind="icp", version=version, status="active", at=now)
        await _handle(storage, handlers.on_agreement_activated, [new_event(data, source="test")], context)
    async with storage.sessions() as session:
        runs = {run.icp_version: run for run in (await session.exec(select(RescoreRun))).all()}
    assert (runs[3].superseded, runs[3].finished_at is None, runs[4].superseded) == (True, False, False)
    assert await rescore_next_chunk(runtime, context)
    async with storage.sessions() as session:
        current = await service.current_run(session)
    assert current is not None
    assert (current.icp_version, current.done) == (4, 2)


BLOCKED_SESSIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.mark.postgres
async def test_racing_replicas_make_one_mql_transition(make_database: DatabaseFactory) -> None:
    async with migrated(await make_database("postgres", "scoring"), MIGRATIONS_DIR) as storage:
        context = _context()
        context.icps = FixedIcps(versions={1: PointsIcp("1")})
        await _handle(storage, handlers.on_lead_received, [_lead("lead-1")], context)
        first_locked = asyncio.Event()

        async def replica(activity: ActivityType, *, commit_late: bool) -> list[bool]:
            async with storage.sessions() as session:
                if not commit_late:
                    await first_locked.wait()  # engage while the other replica holds the score
                icp = await context.icps.active(session)
                event = _activity("lead-1", activity)
                scored = await service.record_activities(session=session, activities=[(event.id, event.data)], icp=icp)
                if commit_late:
                    first_locked.set()
                    await wait_until(lambda: _someone_waits(storage), timeout=10, what="the other replica to wait")
                await session.commit()
                return [item.became_mql for item in scored]

        results = await asyncio.gather(
            replica(ActivityType.DEMO_REQUESTED, commit_late=True),
            replica(ActivityType.WEBINAR_ATTENDED, commit_late=False),
        )

        assert results == [[True], [False]]
        record = await _score(storage, "lead-1")
        assert (record.mql, record.engagement) == (True, 60)


async def _someone_waits(storage: Storage) -> bool:
    async with storage.engine.connect() as connection:
        return bool((await connection.execute(BLOCKED_SESSIONS)).scalar())
