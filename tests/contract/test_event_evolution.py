"""Events evolve without breaking: today's handlers take an event a newer producer extended.

Each service's handler table is built exactly as its bootstrap builds it; every event type it handles
is sent with fields it does not know (in the envelope and in the payload), parsed as the consumer
parses it and run through its route on a database migrated with the service's own migrations.
Requests from clients stay strict: an unknown field in a request body is refused.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.config import IntakeSettings
from intake.leads.handlers import handlers as intake_handlers
from intake.leads.models import Lead, TimelineEntry
from intake.main import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from intake.main import create_app as create_intake
from leadrelay.apikeys import ApiKey, apply_announcements
from leadrelay.broker import EmbeddedBroker
from leadrelay.consumer import Handlers
from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.events import (
    EVENT_TYPES,
    AccountChanged,
    AgreementActivated,
    AgreementApproved,
    AgreementDrafted,
    AgreementRejected,
    AgreementSuperseded,
    ApiKeyChanged,
    EscalationStep,
    EventData,
    LeadActivity,
    LeadAssigned,
    LeadNurtured,
    LeadQueued,
    LeadReceived,
    LeadScored,
    ScoreCriterion,
    SlaBreached,
    SlaCancelled,
    SlaMet,
    SlaStarted,
    SlaWarning,
    TeamChanged,
    ValidationError,
    new_event,
    parse_event,
)
from leadrelay.outbox import OutboxMessage
from leadrelay.settings import ServiceSettings
from leadrelay.stages import LeadStage, SlaState
from leadrelay.testing import FAST_SETTINGS
from router.assignments.handlers import handlers as router_handlers
from router.config import RouterSettings
from router.context import RouterContext
from router.main import MIGRATIONS_DIR as ROUTER_MIGRATIONS
from router.main import create_app as create_router
from scoring.config import ScoringSettings
from scoring.main import MIGRATIONS_DIR as SCORING_MIGRATIONS
from scoring.main import create_app as create_scoring
from scoring.scores.handlers import ScoringContext
from scoring.scores.handlers import handlers as scoring_handlers
from scoring.scores.metrics import ScoringMetrics
from scoring.scores.models import RescoreRun
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.main import MIGRATIONS_DIR as SLA_MONITOR_MIGRATIONS
from sla_monitor.main import create_app as create_sla_monitor
from sla_monitor.main import handlers as sla_monitor_handlers

DatabaseFactory = Callable[[str, str], Awaitable[str]]
MEMORY = "sqlite+aiosqlite:///:memory:"

LEAD_ID = "7f3c8a52-1d47-4c36-9a55-0c1f2e6b9d10"
ASSIGNMENT_ID = "b9dbcccf-014a-4d22-9b11-4714844a10a5"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DUE = AT + timedelta(minutes=5)

RECEIVED = LeadReceived(
    lead_id=LEAD_ID,
    email="ada@example.com",
    first_name="Ada",
    last_name="Lovelace",
    company="Analytical Engines Ltd",
    job_title="Head of Engineering",
    phone="+44 20 7946 0000",
    country="GB",
    source="webinar",
    campaign="2026-q4-launch",
    received_at=AT,
    attributes={"employees": 250},
)
SLA = {"lead_id": LEAD_ID, "obligation": "first_response", "assignment_id": ASSIGNMENT_ID, "rep_id": "rep-default"}

ROUTING_EXPLANATION: dict[str, Any] = {
    "version": "builtin",
    "rule": "default",
    "evaluated": [{"rule": "default", "matched": True}],
    "evaluated_omitted": 0,
    "outcome": "assigned",
    "rep_id": "rep-default",
    "team_id": None,
    "steps": [{"step": 0, "outcome": "chosen", "rep_id": "rep-default", "skipped": [], "skipped_omitted": 0}],
}

# One realistic payload per event type, as docs/events.md shows them.
EXAMPLES: dict[str, EventData] = {
    "lead.received": RECEIVED,
    "lead.scored": LeadScored(
        lead_id=LEAD_ID,
        score=80,
        stage=LeadStage.MQL,
        icp_version="placeholder-1",
        explanation=[
            ScoreCriterion(criterion="business_email", points=30, reason="email on a company domain"),
            ScoreCriterion(criterion="company_known", points=30, reason="company given"),
            ScoreCriterion(criterion="job_title_known", points=20, reason="job title given"),
        ],
        scored_at=AT,
        lead=RECEIVED,
    ),
    "lead.assigned": LeadAssigned(
        lead_id=LEAD_ID,
        assignment_id=ASSIGNMENT_ID,
        rep_id="rep-default",
        rule_path=["default"],
        candidates=["rep-default"],
        routing_version="builtin",
        assigned_at=AT,
        grade="A2",
        source="webinar",
        mql=True,
        explanation=ROUTING_EXPLANATION,
    ),
    "lead.queued": LeadQueued(
        lead_id=LEAD_ID,
        assignment_id=ASSIGNMENT_ID,
        team_id="team-emea",
        rule_path=["default"],
        routing_version="builtin",
        queued_at=AT,
        explanation={**ROUTING_EXPLANATION, "outcome": "queued", "rep_id": None},
    ),
    "lead.nurtured": LeadNurtured(
        lead_id=LEAD_ID,
        assignment_id=ASSIGNMENT_ID,
        rule_path=["default"],
        routing_version="builtin",
        nurtured_at=AT,
        reason="not an MQL yet",
        explanation={**ROUTING_EXPLANATION, "outcome": "nurtured", "rep_id": None},
    ),
    "lead.activity": LeadActivity(lead_id=LEAD_ID, rep_id="rep-default", activity="accepted", occurred_at=AT),
    "sla.started": SlaStarted(**SLA, policy_version="placeholder-1", started_at=AT, due_at=DUE),
    "sla.warning": SlaWarning(**SLA, due_at=DUE, remaining_seconds=60.0),
    "sla.breached": SlaBreached(**SLA, due_at=DUE, breached_at=DUE, escalation=[EscalationStep.REASSIGN]),
    "sla.met": SlaMet(**SLA, due_at=DUE, met_at=AT + timedelta(minutes=2)),
    "sla.cancelled": SlaCancelled(**SLA, due_at=DUE, cancelled_at=AT + timedelta(minutes=2), reason="stage_left"),
    "account.changed": AccountChanged(
        account_id="acc-00042", name="Analytical Engines Ltd", domain="example.com", changed_at=AT
    ),
    "apikey.changed": ApiKeyChanged(
        key_id="key_3f9a1c2b7d4e",
        name="hubspot-sync",
        team="integration",
        scopes=["leads:write"],
        key_hash="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        version=1,
        created_at=AT,
        changed_at=AT,
    ),
    "team.changed": TeamChanged.model_validate(
        {
            "team_id": "team-emea",
            "name": "EMEA inside sales",
            "timezone": "Europe/London",
            "working_hours": {"mon": [{"start": "09:00", "end": "17:30"}]},
            "holidays": {"country": "GB", "subdivision": "ENG"},
            "version": 1,
            "changed_at": AT,
        }
    ),
    **{
        data_type.event_type: data_type(
            kind="icp",
            version=3,
            status=status,
            actor_key_id="key_demo_sales",
            actor_name="demo-sales",
            actor_team="sales",
            reason="too broad" if status == "rejected" else None,
            at=AT,
        )
        for data_type, status in (
            (AgreementDrafted, "draft"),
            (AgreementApproved, "draft"),
            (AgreementRejected, "rejected"),
            (AgreementActivated, "active"),
            (AgreementSuperseded, "superseded"),
        )
    },
}


def extended(data: EventData) -> bytes:
    """The event as a newer producer sends it: fields today's models do not know, at every level."""
    document = json.loads(new_event(data, source="leadrelay/a-newer-version").to_bytes())
    document["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # an extension attribute
    document["partitionkey"] = document["subject"]
    document["data"]["priority"] = {"level": "high", "reasons": ["pricing page visited"]}
    document["data"]["schema_note"] = "fields added in a later version"
    if "lead" in document["data"]:
        document["data"]["lead"]["linkedin_url"] = "https://www.linkedin.com/in/ada"
    explanation = document["data"].get("explanation")
    if isinstance(explanation, list):  # a score's criteria; a routing explanation is a free-form object, kept whole
        for criterion in explanation:
            criterion["weight"] = 1.5
    return json.dumps(document).encode()


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def explicit(settings_class: type[SettingsT], **values: Any) -> SettingsT:
    """Settings from `values` and defaults: nothing here reads a developer's .env."""
    return settings_class(_env_file=None, **values)


Check = Callable[[AsyncSession, str, str], Awaitable[None]]


def published(expected_type: str) -> Check:
    """The handler's effect is one event of `expected_type` staged in the outbox."""

    async def check(session: AsyncSession, _event_type: str, _event_id: str) -> None:
        rows = (await session.exec(select(OutboxMessage))).all()
        assert [row.event_type for row in rows] == [expected_type]
        assert parse_event(rows[0].payload).subject == LEAD_ID

    return check


async def scored(session: AsyncSession, event_type: str, event_id: str) -> None:
    """Scoring's effect: a lead is scored, an ICP activation starts a re-scoring run; the rest stage nothing."""
    if event_type == "lead.received":
        await published("lead.scored")(session, event_type, event_id)
    elif event_type == "agreement.activated":
        assert [run.icp_version for run in (await session.exec(select(RescoreRun))).all()] == [3]
    else:  # a rep's activity on a lead scoring has not seen, an account for the (stub) account book
        assert (await session.exec(select(OutboxMessage))).all() == []


async def read_model_changed(session: AsyncSession, event_type: str, event_id: str) -> None:
    """Intake's effect: the lead read model changed, and the event is on the lead's timeline."""
    lead = await session.get(Lead, LEAD_ID)
    assert lead is not None
    changed: dict[str, Callable[[Lead], bool]] = {
        "lead.scored": lambda lead: (lead.score, lead.icp_version, lead.stage) == (80, "placeholder-1", LeadStage.MQL),
        "lead.assigned": lambda lead: (lead.owner_rep_id, lead.assignment_id) == ("rep-default", ASSIGNMENT_ID),
        "lead.queued": lambda lead: (lead.owner_rep_id, lead.queue_team_id) == (None, "team-emea"),
        "lead.nurtured": lambda lead: (lead.routing_outcome, lead.stage) == ("nurtured", LeadStage.NURTURE),
        "sla.started": lambda lead: (
            lead.sla_due_at is not None
            and (lead.sla_due_at.replace(tzinfo=UTC), lead.sla_state) == (DUE, SlaState.RUNNING)
        ),
        "sla.warning": lambda lead: lead.sla_state == SlaState.WARNING,
        "sla.breached": lambda lead: lead.sla_state == SlaState.BREACHED,
        "sla.met": lambda lead: lead.sla_state == SlaState.MET,
        "sla.cancelled": lambda lead: (
            (lead.sla_state, lead.sla_obligations["first_response"]["state"])
            == (SlaState.CANCELLED, SlaState.CANCELLED)
        ),
    }
    assert changed[event_type](lead), lead
    timeline = (await session.exec(select(TimelineEntry))).all()
    assert [(entry.event_id, entry.type) for entry in timeline] == [(event_id, event_type)]


async def seed_lead(session: AsyncSession) -> None:
    """Intake folds events into leads it accepted: the lead must exist."""
    session.add(Lead(id=LEAD_ID, email=RECEIVED.email, company=RECEIVED.company, received_at=AT))


async def key_stored(session: AsyncSession, _event_type: str, _event_id: str) -> None:
    """Every service's copy of the key registry holds the announced key."""
    key = await session.get(ApiKey, "key_3f9a1c2b7d4e")
    assert key is not None
    assert (key.team, key.scopes, key.version) == ("integration", ["leads:write"], 1)


async def published_nothing(session: AsyncSession, _event_type: str, _event_id: str) -> None:
    """The handler's effect stages no event."""
    assert (await session.exec(select(OutboxMessage))).all() == []


def by_type(checks: dict[str, Check], *, otherwise: Check) -> Check:
    """The check of the event's type, or `otherwise`."""

    async def check(session: AsyncSession, event_type: str, event_id: str) -> None:
        await checks.get(event_type, otherwise)(session, event_type, event_id)

    return check


async def seed_nothing(_session: AsyncSession) -> None:
    """Scoring, router and sla-monitor need nothing before their first event."""


@dataclass(frozen=True)
class Service:
    """A service as its bootstrap wires it: handler table, migrations, what a handler needs first."""

    name: str
    handlers: Handlers
    migrations: Path
    seed: Callable[[AsyncSession], Awaitable[None]]
    effect: Check


SERVICES = [
    Service(
        "intake",
        intake_handlers(explicit(IntakeSettings)),
        INTAKE_MIGRATIONS,
        seed_lead,
        read_model_changed,
    ),
    Service(
        "every-service",  # the platform adds this route to every service's table
        Handlers().on_batch(ApiKeyChanged, apply_announcements),
        ROUTER_MIGRATIONS,
        seed_nothing,
        key_stored,
    ),
    Service(
        "scoring",
        scoring_handlers(ScoringContext(explicit(ScoringSettings), ScoringMetrics(CollectorRegistry(), sources=[]))),
        SCORING_MIGRATIONS,
        seed_nothing,
        scored,
    ),
    Service(
        "router",
        router_handlers(RouterContext.of(explicit(RouterSettings))),
        ROUTER_MIGRATIONS,
        seed_nothing,
        # No team or rep seeded (the app's start-up does that): the built-in rule's fallback queues the lead.
        published("lead.queued"),
    ),
    Service(
        "sla-monitor",
        sla_monitor_handlers(SlaContext.of(explicit(SlaMonitorSettings))),
        SLA_MONITOR_MIGRATIONS,
        seed_nothing,
        # A queued lead starts no timer: a reassignment into a queue only closes the replaced one; an activity
        # for a lead without timers meets nothing; a team's calendar moves no timer when it has none.
        by_type(
            {"lead.queued": published_nothing, "lead.activity": published_nothing, "team.changed": published_nothing},
            otherwise=published("sla.started"),
        ),
    ),
]
HANDLED = [
    pytest.param(service, event_type, id=f"{service.name}-{event_type}")
    for service in SERVICES
    for event_type in service.handlers
]


@asynccontextmanager
async def migrated(url: str, migrations: Path) -> AsyncIterator[SessionFactory]:
    """Sessions on a database at the head of a service's migrations."""
    engine = create_engine(url)
    try:
        await run_migrations(engine, migrations)
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def test_every_event_type_has_an_example_and_every_service_handles_something() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)
    assert {type(data) for data in EXAMPLES.values()} == set(EVENT_TYPES.values())
    assert all(len(service.handlers) > 0 for service in SERVICES)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_an_extended_event_parses_to_what_its_producer_meant(event_type: str) -> None:
    raw = extended(EXAMPLES[event_type])
    assert b'"priority"' in raw
    assert b'"traceparent"' in raw
    event = parse_event(raw)
    assert event.type == event_type
    assert event.data == EXAMPLES[event_type]
    assert "priority" not in event.data.model_dump()  # ignored, not kept: no handler can depend on it


BREAKING = [
    pytest.param("lead.scored", lambda data: data.pop("score"), id="removed-field"),
    pytest.param("lead.scored", lambda data: data.update(score="high"), id="retyped-field"),
    pytest.param("lead.scored", lambda data: data.update(stage="hot"), id="new-enumeration-value"),
    pytest.param("lead.activity", lambda data: data.update(activity="emailed"), id="new-activity-value"),
]


@pytest.mark.parametrize(("event_type", "change"), BREAKING)
def test_what_the_rules_forbid_is_refused_by_todays_readers(
    event_type: str, change: Callable[[dict[str, Any]], object]
) -> None:
    # Why the rules are what they are: these changes make today's consumers dead-letter the event.
    document = json.loads(new_event(EXAMPLES[event_type], source="leadrelay/a-newer-version").to_bytes())
    change(document["data"])
    with pytest.raises(ValidationError):
        parse_event(json.dumps(document).encode())


@pytest.mark.parametrize(("service", "event_type"), HANDLED)
async def test_todays_handlers_take_an_event_with_added_fields(
    service: Service, event_type: str, make_database: DatabaseFactory
) -> None:
    route = service.handlers.route(event_type)
    assert route is not None
    event = parse_event(extended(EXAMPLES[event_type]))
    async with migrated(await make_database("sqlite", service.name), service.migrations) as sessions:
        async with sessions() as session, session.begin():
            await service.seed(session)
        async with sessions() as session, session.begin():
            await route.handle([event], session)
        async with sessions() as session:
            await service.effect(session, event_type, event.id)


APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": lambda: create_intake(explicit(IntakeSettings, database_url=MEMORY), CollectorRegistry()),
    "scoring": lambda: create_scoring(explicit(ScoringSettings, database_url=MEMORY), CollectorRegistry()),
    "router": lambda: create_router(explicit(RouterSettings, database_url=MEMORY), CollectorRegistry()),
    "sla-monitor": lambda: create_sla_monitor(explicit(SlaMonitorSettings, database_url=MEMORY), CollectorRegistry()),
}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(document, target)


def test_every_request_body_refuses_unknown_fields() -> None:
    checked = []
    for name, create_app in APPS.items():
        document = create_app().openapi()  # no lifespan runs: nothing is started
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if operation.get("x-signature-auth"):
                    continue  # a signed webhook carries the sender's own payload: unknown fields go to attributes
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    schema = _resolve(document, media["schema"])
                    where = f"{name}: {method.upper()} {path}"
                    assert schema.get("additionalProperties") is False, f"{where} accepts unknown fields"
                    checked.append(where)
    assert "intake: POST /v1/leads" in checked


async def test_a_lead_with_an_unknown_field_is_refused_and_stores_nothing(
    broker: EmbeddedBroker, make_database: DatabaseFactory
) -> None:
    settings = explicit(
        IntakeSettings,
        database_url=await make_database("sqlite", "intake"),
        kafka_bootstrap_servers=broker.bootstrap_servers,
        **FAST_SETTINGS,
    )
    app = create_intake(settings, CollectorRegistry())
    headers = {"Authorization": f"Bearer {settings.dev_api_key}"}  # seeded at start-up
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as client,
    ):
        refused = await client.post("/v1/leads", json={"email": "ada@example.com", "shoe_size": 44}, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "shoe_size" in {error["field"] for error in refused.json()["errors"]}

        sessions: SessionFactory = app.state.runtime.sessions
        async with sessions() as session:
            assert (await session.exec(select(Lead))).all() == []

        # The same lead without the unknown field is accepted: the field alone was refused.
        accepted = await client.post("/v1/leads", json={"email": "ada@example.com"}, headers=headers)
        assert accepted.status_code == 202, accepted.text
