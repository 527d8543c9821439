"""lead.scored in intake's read model (SQLite and PostgreSQL): grade, MQL, account, one timeline entry per decision."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import select

from intake.leads.handlers import MAX_TIMELINE_CRITERIA, on_lead_scored
from intake.leads.models import Lead
from leadrelay.db import create_engine, create_session_factory
from leadrelay.events import (
    AccountMatch,
    CloudEvent,
    CriterionKind,
    LeadReceived,
    LeadScored,
    MatchMethod,
    ScoreCriterion,
    ScoreTrigger,
    new_event,
)
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrations_of

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ACCOUNT = AccountMatch(account_id="acc-1", method=MatchMethod.DOMAIN, confidence=1.0, owner_rep_id="rep-emea")


async def _lead(storage: Storage, email: str = "ada@analytical.example") -> str:
    async with storage.sessions() as session:
        lead = Lead(email=email)
        session.add(lead)
        await session.commit()
        return lead.id


def _scored(lead_id: str, **fields: Any) -> CloudEvent[LeadScored]:
    values: dict[str, Any] = {
        "score": 40,
        "stage": LeadStage.LEAD,
        "icp_version": "1",
        "explanation": [ScoreCriterion(criterion="target_industry", points=40, reason="industry Software")],
        "scored_at": AT,
        "lead": LeadReceived(lead_id=lead_id, email="ada@analytical.example", source="api", received_at=AT),
        "fit": 40,
        "engagement": 0,
        "grade": "B4",
        "mql": False,
        "mql_reason": "engagement 4 is below 2",
        **fields,
    }
    return new_event(LeadScored(lead_id=lead_id, **values), source="leadrelay/scoring")


async def _fold(storage: Storage, *events: CloudEvent[LeadScored]) -> None:
    async with storage.sessions() as session:
        await on_lead_scored(list(events), session)
        await session.commit()


async def _scored_entries(api: httpx.AsyncClient, lead_id: str) -> list[dict[str, Any]]:
    timeline = (await api.get(f"/v1/leads/{lead_id}/timeline")).json()["timeline"]
    return [entry["details"] for entry in timeline if entry["type"] == "lead.scored"]


async def test_a_score_shows_on_the_lead_and_its_timeline(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)

    await _fold(
        intake_db,
        _scored(
            lead_id,
            score=86,
            stage=LeadStage.MQL,
            fit=70,
            engagement=16,
            grade="A2",
            mql=True,
            mql_reason="fit A >= B and engagement 2 >= 2",
            became_mql=True,
            account=ACCOUNT,
            enriched_fields=["industry"],
            trigger=ScoreTrigger.ENGAGEMENT,
        ),
    )

    lead = (await api.get(f"/v1/leads/{lead_id}")).json()
    assert {name: lead[name] for name in ("score", "stage", "icp_version", "grade", "fit", "engagement", "mql")} == {
        "score": 86,
        "stage": "mql",
        "icp_version": "1",
        "grade": "A2",
        "fit": 70,
        "engagement": 16,
        "mql": True,
    }
    assert lead["account_id"] == "acc-1"
    [entry] = await _scored_entries(api, lead_id)
    assert entry == {
        "score": 86,
        "stage": "mql",
        "icp_version": "1",
        "grade": "A2",
        "fit": 70,
        "engagement": 16,
        "mql": True,
        "mql_reason": "fit A >= B and engagement 2 >= 2",
        "became_mql": True,
        "disqualified": None,
        "trigger": "engagement",
        "account": {"account_id": "acc-1", "method": "domain", "confidence": 1.0, "owner_rep_id": "rep-emea"},
        "enriched_fields": ["industry"],
        "explanation": [{"criterion": "target_industry", "points": 40, "reason": "industry Software", "kind": "fit"}],
        "explanation_omitted": 0,
    }


async def test_a_new_grade_is_recorded_and_an_exact_repeat_is_not(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    first = _scored(lead_id)
    # Same score and ICP version, new engagement and grade: recorded (the old dedupe dropped it).
    engaged = _scored(lead_id, engagement=10, grade="B3", trigger=ScoreTrigger.ENGAGEMENT)
    repeat = _scored(lead_id, engagement=10, grade="B3", trigger=ScoreTrigger.ENGAGEMENT)  # a new id, same values

    await _fold(intake_db, first, first)
    await _fold(intake_db, engaged, repeat)
    await _fold(intake_db, repeat)

    entries = await _scored_entries(api, lead_id)
    assert [(entry["grade"], entry["trigger"]) for entry in entries] == [("B4", "received"), ("B3", "engagement")]
    lead = (await api.get(f"/v1/leads/{lead_id}")).json()
    assert (lead["score"], lead["grade"], lead["engagement"]) == (40, "B3", 10)


async def test_scoring_does_not_move_a_lead_sales_has(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    async with intake_db.sessions() as session:
        lead = await session.get(Lead, lead_id)
        assert lead is not None
        lead.stage = LeadStage.SAL
        session.add(lead)
        await session.commit()

    await _fold(intake_db, _scored(lead_id, stage=LeadStage.MQL, grade="A1", mql=True))

    lead_read = (await api.get(f"/v1/leads/{lead_id}")).json()
    assert (lead_read["stage"], lead_read["grade"], lead_read["mql"]) == ("sal", "A1", True)


async def test_the_timeline_keeps_the_criteria_that_weighed_most(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    explanation = [
        ScoreCriterion(criterion=f"c{index}", points=index % 7 - 3, reason="x" * 1000, kind=CriterionKind.ENGAGEMENT)
        for index in range(200)
    ]

    await _fold(intake_db, _scored(lead_id, explanation=explanation))

    [entry] = await _scored_entries(api, lead_id)
    kept = entry["explanation"]
    assert len(kept) == MAX_TIMELINE_CRITERIA
    assert entry["explanation_omitted"] == 200 - MAX_TIMELINE_CRITERIA
    assert all(abs(item["points"]) == 3 for item in kept)
    names = [item["criterion"] for item in kept]
    assert names == sorted(names, key=lambda name: int(name[1:]))  # in the ICP's order
    assert {len(item["reason"]) for item in kept} == {200}


async def test_leads_are_filtered_by_grade_and_mql(api: httpx.AsyncClient, intake_db: Storage) -> None:
    a1, b4, unscored = [await _lead(intake_db, f"{name}@example.com") for name in ("a1", "b4", "none")]
    await _fold(intake_db, _scored(a1, grade="A1", mql=True), _scored(b4))

    async def listed(**params: Any) -> list[str]:
        answer = await api.get("/v1/leads", params=params)
        assert answer.status_code == 200, answer.text
        return [lead["id"] for lead in answer.json()["leads"]]

    assert await listed(grade="A1") == [a1]
    assert await listed(mql="true") == [a1]
    assert sorted(await listed(mql="false")) == sorted([b4, unscored])
    assert await listed(grade="B4", mql="true") == []
    bad = await api.get("/v1/leads", params={"grade": "E9"})
    assert bad.status_code == 422
    assert "grade" in bad.json()["detail"]


async def test_the_migration_applies_to_a_table_with_leads(database_url: str) -> None:
    async def old_leads(connection: AsyncConnection) -> None:
        await _insert_old_lead(connection, lead_id="00000000-0000-4000-8000-000000000001", stage=LeadStage.MQL)
        await _insert_old_lead(connection, lead_id="00000000-0000-4000-8000-000000000002", stage=LeadStage.LEAD)

    migrated = await leads_after_upgrade(database_url, start="adfc7fa24c7c", old_leads=old_leads)

    assert {lead.id[-1]: (lead.mql, lead.grade, lead.fit) for lead in migrated} == {
        "1": (True, None, None),
        "2": (False, None, None),
    }


async def leads_after_upgrade(
    database_url: str, *, start: str, old_leads: Callable[[AsyncConnection], Awaitable[None]]
) -> list[Lead]:
    """The leads `old_leads` stored at revision `start`, read through today's model once migrated to head."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, start)
            await old_leads(connection)
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "head")
        async with create_session_factory(engine)() as session:
            return list((await session.exec(select(Lead))).all())
    finally:
        await engine.dispose()


def _upgrade(connection: Any, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_of("intake")))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _insert_old_lead(connection: AsyncConnection, *, lead_id: str, stage: LeadStage) -> None:
    values = {
        "id": lead_id,
        "email": f"{lead_id}@example.com",
        "source": "api",
        "attributes": {},
        "stage": stage,
        "score": 70,
        "received_at": AT,
        "updated_at": AT,
        "redrive_count": 0,
        "reengagement_count": 0,
        "email_free_mail": False,
        "email_disposable": False,
        "email_lookalike": False,
    }
    # Only the columns the old revision has, with the model's types.
    columns = sa.inspect(Lead).columns
    old_lead = sa.table("lead", *(sa.column(column.name, column.type) for column in columns if column.name in values))
    await connection.execute(sa.insert(old_lead).values(values))
