"""Routing decisions in intake's read model (SQLite, PostgreSQL): owner, team queue, nurture stage, timeline."""

from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from test_intake_read_model import _insert_old_lead, leads_after_upgrade

from intake.config import IntakeSettings
from intake.leads.handlers import MAX_TIMELINE_CANDIDATES, handlers, on_lead_scored
from intake.leads.models import Lead
from intake.leads.schemas import ASSIGNED_DETAILS_EXAMPLE
from leadrelay.events import (
    AssignmentTrigger,
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadNurtured,
    LeadQueued,
    LeadReceived,
    LeadScored,
    new_event,
)
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
EXPLANATION = {
    "version": "3",
    "rule": "emea",
    "evaluated": [{"rule": "enterprise_accounts", "matched": False}, {"rule": "emea", "matched": True}],
    "outcome": "assigned",
    "steps": [{"step": 0, "outcome": "chosen", "rep_id": "rep-ada"}],
}
HANDLERS = handlers(IntakeSettings(_env_file=None))


async def _lead(storage: Storage, email: str = "ada@analytical.example", **fields: Any) -> str:
    async with storage.sessions() as session:
        lead = Lead(email=email, **fields)
        session.add(lead)
        await session.commit()
        return lead.id


def _assigned(lead_id: str, assignment_id: str, rep_id: str = "rep-ada", **fields: Any) -> CloudEvent[LeadAssigned]:
    values: dict[str, Any] = {
        "team_id": "team-emea",
        "rule_path": ["enterprise_accounts", "emea"],
        "candidates": ["rep-bob", rep_id],
        "routing_version": "3",
        "assigned_at": AT,
        "grade": "A2",
        "source": "webinar",
        "mql": True,
        "explanation": EXPLANATION,
        **fields,
    }
    data = LeadAssigned(lead_id=lead_id, assignment_id=assignment_id, rep_id=rep_id, **values)
    return new_event(data, source="leadrelay/router")


def _queued(lead_id: str, assignment_id: str, **fields: Any) -> CloudEvent[LeadQueued]:
    values: dict[str, Any] = {
        "team_id": "team-emea",
        "rule_path": ["emea"],
        "routing_version": "3",
        "queued_at": AT,
        "explanation": {**EXPLANATION, "outcome": "queued"},
        **fields,
    }
    return new_event(LeadQueued(lead_id=lead_id, assignment_id=assignment_id, **values), source="leadrelay/router")


def _nurtured(lead_id: str, assignment_id: str, **fields: Any) -> CloudEvent[LeadNurtured]:
    values: dict[str, Any] = {
        "rule_path": ["not_mql"],
        "routing_version": "3",
        "nurtured_at": AT,
        "reason": "not an MQL yet",
        "grade": "C4",
        "explanation": {"version": "3", "rule": "not_mql", "outcome": "nurtured"},
        **fields,
    }
    return new_event(LeadNurtured(lead_id=lead_id, assignment_id=assignment_id, **values), source="leadrelay/router")


async def _consume(storage: Storage, *events: CloudEvent[Any]) -> None:
    """The events as the consumer hands them over: runs of consecutive events of one type, in one transaction."""
    async with storage.sessions() as session:
        run: list[CloudEvent[Any]] = []
        for event in [*events, None]:
            if run and (event is None or event.type != run[0].type):
                route = HANDLERS.route(run[0].type)
                assert route is not None
                await route.handle(run, session)
                run = []
            if event is not None:
                run.append(event)
        await session.commit()


async def _read(api: httpx.AsyncClient, lead_id: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/leads/{lead_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _routing_entries(api: httpx.AsyncClient, lead_id: str) -> list[dict[str, Any]]:
    timeline = (await api.get(f"/v1/leads/{lead_id}/timeline")).json()["timeline"]
    return [{"type": entry["type"], **entry["details"]} for entry in timeline if entry["type"].startswith("lead.")]


def _owner(lead: dict[str, Any]) -> tuple[Any, ...]:
    return lead["owner_rep_id"], lead["queue_team_id"], lead["routing_outcome"], lead["assignment_sequence"]


async def test_an_assignment_shows_its_owner_and_the_explained_decision(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)

    await _consume(intake_db, _assigned(lead_id, "asg-1"))

    assert _owner(await _read(api, lead_id)) == ("rep-ada", None, "assigned", 1)
    [entry] = await _routing_entries(api, lead_id)
    assert set(entry) == {"type", *ASSIGNED_DETAILS_EXAMPLE}  # what the API documents, no more, no less
    said = (
        "outcome",
        "rule",
        "routing_version",
        "sequence",
        "trigger",
        "rep_id",
        "team_id",
        "previous_rep_id",
        "grade",
    )
    assert [entry[name] for name in said] == ["assigned", "emea", "3", 1, "routed", "rep-ada", "team-emea", None, "A2"]
    assert (entry["explanation"], entry["candidates"], entry["candidates_omitted"]) == (
        EXPLANATION,
        ["rep-bob", "rep-ada"],
        0,
    )


async def test_a_reassignment_replaces_the_owner_and_says_why(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    first = _assigned(lead_id, "asg-1")
    breach = _assigned(
        lead_id,
        "asg-2",
        rep_id="rep-cy",
        sequence=2,
        trigger=AssignmentTrigger.SLA_BREACH,
        previous_assignment_id="asg-1",
        previous_rep_id="rep-ada",
        reason="first_response breached",
    )

    await _consume(intake_db, first, breach)

    assert _owner(await _read(api, lead_id)) == ("rep-cy", None, "assigned", 2)
    entries = await _routing_entries(api, lead_id)
    assert [(e["sequence"], e["rep_id"], e["trigger"]) for e in entries] == [
        (1, "rep-ada", "routed"),
        (2, "rep-cy", "sla_breach"),
    ]
    assert {name: entries[1][name] for name in ("previous_assignment_id", "previous_rep_id", "reason")} == {
        "previous_assignment_id": "asg-1",
        "previous_rep_id": "rep-ada",
        "reason": "first_response breached",
    }


async def test_an_older_decision_arriving_late_changes_nothing(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    first, second = _assigned(lead_id, "asg-1"), _assigned(lead_id, "asg-2", rep_id="rep-cy", sequence=2)
    queued_first = _queued(lead_id, "asg-0")  # a first decision the router re-announced after the reassignment

    await _consume(intake_db, second)
    await _consume(intake_db, first, queued_first)
    # The same decision announced again (a re-drive: a new event id) adds nothing either.
    await _consume(intake_db, _assigned(lead_id, "asg-2", rep_id="rep-cy", sequence=2))

    assert _owner(await _read(api, lead_id)) == ("rep-cy", None, "assigned", 2)
    assert [entry["assignment_id"] for entry in await _routing_entries(api, lead_id)] == ["asg-2"]


async def test_a_queued_lead_has_no_owner_and_waits_in_its_team_queue(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    queued = _queued(lead_id, "asg-1")  # the timeline is in event time: queued first
    picked = _assigned(
        lead_id, "asg-2", sequence=2, trigger=AssignmentTrigger.MANUAL, previous_assignment_id="asg-1", reason="picked"
    )

    await _consume(intake_db, queued)
    queued_lead = await _read(api, lead_id)
    await _consume(intake_db, picked)

    assert _owner(queued_lead) == (None, "team-emea", "queued", 1)
    assert _owner(await _read(api, lead_id)) == ("rep-ada", None, "assigned", 2)
    entries = await _routing_entries(api, lead_id)
    assert [(e["type"], e["outcome"], e["team_id"], e["rep_id"], e["trigger"]) for e in entries] == [
        ("lead.queued", "queued", "team-emea", None, "routed"),
        ("lead.assigned", "assigned", "team-emea", "rep-ada", "manual"),
    ]
    assert entries[0]["explanation"]["outcome"] == "queued"


async def test_a_nurtured_lead_goes_to_stage_nurture_with_no_owner(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)

    await _consume(intake_db, _nurtured(lead_id, "asg-1"))

    lead = await _read(api, lead_id)
    assert (lead["stage"], *_owner(lead)) == ("nurture", None, None, "nurtured", 1)
    [entry] = await _routing_entries(api, lead_id)
    assert {name: entry[name] for name in ("outcome", "rule", "reason", "stage", "stage_changed", "trigger")} == {
        "outcome": "nurtured",
        "rule": "not_mql",
        "reason": "not an MQL yet",
        "stage": "nurture",
        "stage_changed": True,
        "trigger": "routed",
    }


async def test_a_nurtured_lead_sales_already_moved_keeps_its_stage_and_is_marked(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db, stage=LeadStage.SQL)

    await _consume(intake_db, _nurtured(lead_id, "asg-1"))

    lead = await _read(api, lead_id)
    assert (lead["stage"], lead["routing_outcome"]) == ("sql", "nurtured")
    [entry] = await _routing_entries(api, lead_id)
    assert (entry["stage"], entry["stage_changed"]) == ("sql", False)


def _scored(lead_id: str, stage: LeadStage) -> CloudEvent[LeadScored]:
    received = LeadReceived(lead_id=lead_id, email="ada@analytical.example", source="api", received_at=AT)
    mql = stage is LeadStage.MQL
    data = LeadScored(
        lead_id=lead_id, score=80 if mql else 20, stage=stage, icp_version="1", explanation=[], scored_at=AT,
        lead=received, mql=mql,
    )  # fmt: skip
    return new_event(data, source="leadrelay/scoring")


async def test_a_score_arriving_after_the_nurture_does_not_undo_it_unless_it_says_mql(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    lead_id = await _lead(intake_db)
    # Scored and routed travel on different topics: intake may see the nurture first.
    await _consume(intake_db, _nurtured(lead_id, "asg-1"))
    async with intake_db.sessions() as session:
        await on_lead_scored([_scored(lead_id, LeadStage.LEAD)], session)
        await session.commit()
    after_lead_score = (await _read(api, lead_id))["stage"]
    async with intake_db.sessions() as session:
        await on_lead_scored([_scored(lead_id, LeadStage.MQL)], session)
        await session.commit()

    assert after_lead_score == "nurture"
    assert (await _read(api, lead_id))["stage"] == "mql"


async def test_the_timeline_lists_a_bounded_number_of_candidates(api: httpx.AsyncClient, intake_db: Storage) -> None:
    lead_id = await _lead(intake_db)
    reps = [f"rep-{index}" for index in range(5_000)]

    await _consume(intake_db, _assigned(lead_id, "asg-1", rep_id="rep-4999", candidates=reps))

    [entry] = await _routing_entries(api, lead_id)
    assert entry["candidates"] == reps[:MAX_TIMELINE_CANDIDATES]
    assert entry["candidates_omitted"] == 5_000 - MAX_TIMELINE_CANDIDATES


async def test_leads_are_filtered_by_queue_and_routing_outcome(api: httpx.AsyncClient, intake_db: Storage) -> None:
    assigned, queued, nurtured, unrouted = [
        await _lead(intake_db, f"{name}@example.com") for name in ("assigned", "queued", "nurtured", "unrouted")
    ]
    await _consume(
        intake_db,
        _assigned(assigned, "asg-a"),
        _queued(queued, "asg-q"),
        _queued(assigned, "asg-old"),  # older than the lead's assignment: no effect
        _nurtured(nurtured, "asg-n"),
    )

    async def listed(**params: Any) -> list[str]:
        answer = await api.get("/v1/leads", params=params)
        assert answer.status_code == 200, answer.text
        return [lead["id"] for lead in answer.json()["leads"]]

    assert await listed(queue_team_id="team-emea") == [queued]
    assert await listed(routing_outcome="queued") == [queued]
    assert await listed(routing_outcome="nurtured") == [nurtured]
    assert await listed(owner_rep_id="rep-ada", routing_outcome="assigned") == [assigned]
    assert unrouted not in await listed(routing_outcome="assigned")
    bad = await api.get("/v1/leads", params={"routing_outcome": "lost"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "routing_outcome" in bad.json()["detail"]


async def test_the_migration_marks_leads_routed_before_as_first_assignments(database_url: str) -> None:
    async def old_leads(connection: AsyncConnection) -> None:
        for lead_id in ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"):
            await _insert_old_lead(connection, lead_id=lead_id, stage=LeadStage.MQL)
        routed = "UPDATE lead SET owner_rep_id = 'rep-ada', assignment_id = 'asg-1' WHERE id LIKE '%1'"
        await connection.execute(sa.text(routed))

    migrated = await leads_after_upgrade(database_url, start="87e028665136", old_leads=old_leads)

    assert {lead.id[-1]: (lead.routing_outcome, lead.assignment_sequence, lead.queue_team_id) for lead in migrated} == {
        "1": ("assigned", 1, None),
        "2": (None, 0, None),
    }


def test_every_routing_event_has_a_handler() -> None:
    routed: list[type[EventData]] = [LeadAssigned, LeadQueued, LeadNurtured]
    assert all(HANDLERS.route(data_type.event_type) is not None for data_type in routed)
