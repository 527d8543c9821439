"""Runs of events in intake's read model (SQLite and PostgreSQL): a run of many leads, with changes, repeats,
stale decisions and unknown leads mixed, reads through the API exactly as the same events handled one by one."""

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx

from intake.leads.handlers import on_lead_assigned, on_lead_scored, on_sla_met, on_sla_started
from intake.leads.models import Lead
from leadrelay.events import (
    AccountMatch,
    ActivityType,
    CloudEvent,
    LeadAssigned,
    LeadReceived,
    LeadScored,
    MatchMethod,
    ScoreCriterion,
    SlaMet,
    SlaStarted,
    new_event,
)
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEADS = 4
Handler = Callable[[Sequence[CloudEvent[Any]], Any], Awaitable[None]]


def _scored(lead_id: str, *, score: int) -> CloudEvent[LeadScored]:
    data = LeadScored(
        lead_id=lead_id,
        score=score,
        stage=LeadStage.MQL if score >= 80 else LeadStage.LEAD,
        icp_version="3",
        explanation=[ScoreCriterion(criterion="target_industry", points=score, reason="industry Software")],
        scored_at=AT,
        lead=LeadReceived(lead_id=lead_id, email="ada@analytical.example", source="api", received_at=AT),
        fit=score,
        grade="A1" if score >= 80 else "C3",
        mql=score >= 80,
        account=AccountMatch(account_id="acc-1", method=MatchMethod.DOMAIN, confidence=1.0) if score >= 80 else None,
    )
    return new_event(data, source="leadrelay/scoring")


def _assigned(lead_id: str, *, assignment: str, sequence: int, rep_id: str) -> CloudEvent[LeadAssigned]:
    data = LeadAssigned(
        lead_id=lead_id,
        assignment_id=assignment,
        rep_id=rep_id,
        team_id="emea",
        rule_path=["emea"],
        candidates=["rep-ada", "rep-bob"],
        routing_version="7",
        assigned_at=AT,
        sequence=sequence,
    )
    return new_event(data, source="leadrelay/router")


def _sla(lead_id: str, obligation: str, *, met: bool = False) -> CloudEvent[SlaStarted] | CloudEvent[SlaMet]:
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "obligation": obligation,
        "assignment_id": f"{lead_id[:8]}-1",
        "rep_id": "rep-ada",
        "due_at": AT + timedelta(minutes=15 if obligation == "accept" else 30),
    }
    if met:
        return new_event(
            SlaMet(**fields, met_at=AT + timedelta(minutes=5), activity=ActivityType.ACCEPTED, elapsed_seconds=300),
            source="leadrelay/sla-monitor",
        )
    return new_event(SlaStarted(**fields, started_at=AT), source="leadrelay/sla-monitor")


def _runs(ids: Sequence[str]) -> list[tuple[Handler, list[CloudEvent[Any]]]]:
    """Runs of same-type events as the consumer hands them over: leads 0-2 change, lead 3 only hears stale news."""
    a, b, c, d = ids
    unknown = str(uuid4())
    return [
        (
            on_lead_scored,
            [_scored(a, score=90), _scored(b, score=40), _scored(unknown, score=90), _scored(b, score=40),
             _scored(c, score=85), _scored(a, score=92)],
        ),
        (
            on_lead_assigned,
            [_assigned(a, assignment=f"{a[:8]}-1", sequence=1, rep_id="rep-ada"),
             _assigned(c, assignment=f"{c[:8]}-1", sequence=1, rep_id="rep-bob"),
             _assigned(c, assignment=f"{c[:8]}-2", sequence=2, rep_id="rep-ada"),
             _assigned(a, assignment=f"{a[:8]}-1", sequence=1, rep_id="rep-ada"),
             _assigned(d, assignment=f"{d[:8]}-0", sequence=0, rep_id="rep-bob")],
        ),
        (
            on_sla_started,
            [_sla(a, "accept"), _sla(a, "first_touch"), _sla(c, "accept"), _sla(a, "accept")],
        ),
        (on_sla_met, [_sla(a, "accept", met=True), _sla(c, "first_touch", met=True), _sla(a, "accept", met=True)]),
    ]  # fmt: skip


async def _new_leads(storage: Storage) -> list[str]:
    async with storage.sessions() as session:
        leads = [Lead(email=f"{uuid4()}@analytical.example") for _ in range(LEADS)]
        session.add_all(leads)
        await session.commit()
        return [lead.id for lead in leads]


async def _handle(storage: Storage, handler: Handler, events: Sequence[CloudEvent[Any]]) -> None:
    async with storage.sessions() as session, session.begin():
        await handler(events, session)


async def _read(api: httpx.AsyncClient, lead_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The lead and its timeline as the API shows them, less what differs between two leads told the same."""
    lead = (await api.get(f"/v1/leads/{lead_id}")).json()
    timeline = (await api.get(f"/v1/leads/{lead_id}/timeline")).json()["timeline"]
    prefix = lead_id[:8]
    unlike = {"id", "email", "received_at", "updated_at", "timeline"}  # the timeline is compared without event ids
    shown = {name: value for name, value in lead.items() if name not in unlike}
    entries = [{"type": entry["type"], "details": entry["details"]} for entry in timeline]
    return _anonymous(shown, prefix), _anonymous(entries, prefix)


def _anonymous(value: Any, prefix: str) -> Any:
    """Assignment ids made from the lead's id, made alike."""
    if isinstance(value, dict):
        return {name: _anonymous(item, prefix) for name, item in value.items()}
    if isinstance(value, list):
        return [_anonymous(item, prefix) for item in value]
    return value.replace(prefix, "LEAD") if isinstance(value, str) else value


async def test_a_run_of_many_leads_reads_as_the_same_events_one_at_a_time(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    together, alone = await _new_leads(intake_db), await _new_leads(intake_db)
    before = [(await api.get(f"/v1/leads/{lead_id}")).json()["updated_at"] for lead_id in together]

    for handler, events in _runs(together):
        await _handle(intake_db, handler, events)
    for handler, events in _runs(alone):
        for event in events:
            await _handle(intake_db, handler, [event])

    for lead_together, lead_alone in zip(together, alone, strict=True):
        assert await _read(api, lead_together) == await _read(api, lead_alone)
    first, second, third, stale = [await _read(api, lead_id) for lead_id in together]
    assert (first[0]["score"], first[0]["grade"], first[0]["stage"], first[0]["owner_rep_id"]) == (
        92,
        "A1",
        "mql",
        "rep-ada",
    )
    assert (first[0]["sla_state"], sorted(first[0]["sla_obligations"])) == ("running", ["accept", "first_touch"])
    assert [entry["type"] for entry in first[1]] == [
        "lead.scored", "lead.scored", "lead.assigned", "sla.started", "sla.started", "sla.met"
    ]  # fmt: skip
    assert [entry["type"] for entry in second[1]] == ["lead.scored"]  # the repeat of the same score adds nothing
    assert (third[0]["owner_rep_id"], third[0]["assignment_sequence"]) == ("rep-ada", 2)
    assert sorted(third[0]["sla_obligations"]) == ["accept", "first_touch"]
    assert stale[1] == []  # an older routing decision changes nothing
    after = [(await api.get(f"/v1/leads/{lead_id}")).json()["updated_at"] for lead_id in together]
    assert [moved != kept for moved, kept in zip(after, before, strict=True)] == [True, True, True, False]
