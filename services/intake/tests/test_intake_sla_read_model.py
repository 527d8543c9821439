"""Several SLA obligations per lead in intake's read model (SQLite and PostgreSQL): each obligation's state, the
lead's most urgent one, sla.cancelled, out-of-order events, the timeline, and the API that shows them."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from intake.leads import service
from intake.leads.handlers import (
    on_sla_breached,
    on_sla_cancelled,
    on_sla_met,
    on_sla_started,
    on_sla_warning,
    sla_summary,
)
from intake.leads.models import Lead
from leadrelay.events import (
    ActivityType,
    CloudEvent,
    EscalationStep,
    SlaBreached,
    SlaCancelled,
    SlaEventData,
    SlaMet,
    SlaStarted,
    SlaWarning,
    new_event,
)
from leadrelay.stages import SlaState
from leadrelay.testing import Storage

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
FIRST, SECOND = "0b7c3e9a-1d0f-4a55-8f57-6c0c1c8a9b10", "5d2e8f1a-9c3b-4e7d-a6f0-2b1c9d8e7f60"
# Two obligations on one assignment: accept within 15 minutes, first touch within 30.
WINDOWS = {"accept": timedelta(minutes=15), "first_touch": timedelta(minutes=30)}
HANDLERS: dict[type[SlaEventData], Any] = {
    SlaStarted: on_sla_started,
    SlaWarning: on_sla_warning,
    SlaBreached: on_sla_breached,
    SlaMet: on_sla_met,
    SlaCancelled: on_sla_cancelled,
}


class Sla:
    """sla.* events of one lead, as the sla-monitor makes them: times from the obligation's start."""

    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id

    def _common(self, obligation: str, assignment_id: str, start: datetime, at: datetime) -> dict[str, Any]:
        return {"lead_id": self.lead_id, "obligation": obligation, "assignment_id": assignment_id,
                "rep_id": "rep-ada" if assignment_id == FIRST else "rep-bob", "due_at": start + WINDOWS[obligation],
                "elapsed_seconds": (at - start).total_seconds()}  # fmt: skip

    def started(self, obligation: str, assignment_id: str = FIRST, start: datetime = AT) -> CloudEvent[SlaStarted]:
        data = SlaStarted(**self._common(obligation, assignment_id, start, start), started_at=start)
        return new_event(data, source="leadrelay/sla-monitor")

    def warning(self, obligation: str, assignment_id: str = FIRST, start: datetime = AT) -> CloudEvent[SlaWarning]:
        at = start + WINDOWS[obligation] * 0.8
        data = SlaWarning(**self._common(obligation, assignment_id, start, at), warned_at=at,
                          remaining_seconds=(WINDOWS[obligation] * 0.2).total_seconds())  # fmt: skip
        return new_event(data, source="leadrelay/sla-monitor")

    def breached(self, obligation: str, assignment_id: str = FIRST, start: datetime = AT) -> CloudEvent[SlaBreached]:
        at = start + WINDOWS[obligation]
        data = SlaBreached(**self._common(obligation, assignment_id, start, at), breached_at=at,
                           escalation=[EscalationStep.REMIND, EscalationStep.REASSIGN])  # fmt: skip
        return new_event(data, source="leadrelay/sla-monitor")

    def met(
        self, obligation: str, assignment_id: str = FIRST, start: datetime = AT, after: timedelta = timedelta(minutes=5)
    ) -> CloudEvent[SlaMet]:
        at = start + after
        data = SlaMet(**self._common(obligation, assignment_id, start, at), met_at=at, activity=ActivityType.CONTACTED)
        return new_event(data, source="leadrelay/sla-monitor")

    def cancelled(
        self,
        obligation: str,
        reason: str,
        assignment_id: str = FIRST,
        start: datetime = AT,
        after: timedelta = timedelta(minutes=3),
    ) -> CloudEvent[SlaCancelled]:
        at = start + after
        data = SlaCancelled(**self._common(obligation, assignment_id, start, at), cancelled_at=at, reason=reason)
        return new_event(data, source="leadrelay/sla-monitor")


async def new_lead(storage: Storage, email: str = "ada@analytical.example") -> tuple[str, Sla]:
    async with storage.sessions() as session:
        lead = Lead(email=email, source="api")
        session.add(lead)
        await session.commit()
        return lead.id, Sla(lead.id)


async def fold(storage: Storage, *events: CloudEvent[Any]) -> None:
    """Each event in its own transaction, as intake's consumer hands runs of one type to their handler."""
    for event in events:
        async with storage.sessions() as session:
            await HANDLERS[type(event.data)]([event], session)
            await session.commit()


async def lead_of(storage: Storage, lead_id: str) -> Lead:
    async with storage.sessions() as session:
        lead = await session.get(Lead, lead_id, populate_existing=True)
        assert lead is not None
        return lead


def states(lead: Lead) -> dict[str, str]:
    return {name: entry["state"] for name, entry in lead.sla_obligations.items()}


async def test_a_warning_on_one_obligation_and_the_other_met_shows_the_warning(intake_db: Storage) -> None:
    lead_id, sla = await new_lead(intake_db)

    await fold(intake_db, sla.started("accept"), sla.started("first_touch"))
    lead = await lead_of(intake_db, lead_id)
    # Both running: the soonest deadline is the lead's.
    assert (lead.sla_state, lead.sla_due_at) == ("running", AT + WINDOWS["accept"])

    await fold(intake_db, sla.met("first_touch"), sla.warning("accept"))
    lead = await lead_of(intake_db, lead_id)
    assert states(lead) == {"accept": "warning", "first_touch": "met"}
    assert (lead.sla_state, lead.sla_due_at) == ("warning", AT + WINDOWS["accept"])

    await fold(intake_db, sla.met("accept", after=timedelta(minutes=13)))
    lead = await lead_of(intake_db, lead_id)
    # Nothing open: the latest closed obligation (accept, met at 09:13) stands for the lead.
    assert (lead.sla_state, lead.sla_due_at) == ("met", AT + WINDOWS["accept"])


@pytest.mark.parametrize(
    ("first_touch", "expected"),
    [
        ("running", ("breached", "accept")),
        ("warning", ("breached", "accept")),
    ],
)
async def test_a_breach_is_more_urgent_than_a_sooner_running_or_warned_deadline(
    intake_db: Storage, first_touch: str, expected: tuple[str, str]
) -> None:
    lead_id, sla = await new_lead(intake_db)
    # accept started earlier (its deadline has passed); first_touch later with a nearer deadline than nothing.
    await fold(intake_db, sla.started("accept"), sla.breached("accept"))
    await fold(intake_db, sla.started("first_touch", start=AT + timedelta(minutes=10)))
    if first_touch == "warning":
        await fold(intake_db, sla.warning("first_touch", start=AT + timedelta(minutes=10)))

    lead = await lead_of(intake_db, lead_id)
    state, obligation = expected
    assert (lead.sla_state, lead.sla_due_at) == (state, AT + WINDOWS[obligation])
    assert states(lead) == {"accept": "breached", "first_touch": first_touch}


async def test_cancelled_closes_an_obligation_and_shows_only_when_nothing_is_open(intake_db: Storage) -> None:
    lead_id, sla = await new_lead(intake_db)
    await fold(intake_db, sla.started("accept"), sla.started("first_touch"))

    await fold(intake_db, sla.cancelled("accept", "stage_left"))
    lead = await lead_of(intake_db, lead_id)
    assert states(lead) == {"accept": "cancelled", "first_touch": "running"}
    assert (lead.sla_state, lead.sla_due_at) == ("running", AT + WINDOWS["first_touch"])

    await fold(intake_db, sla.cancelled("first_touch", "stage_left", after=timedelta(minutes=4)))
    lead = await lead_of(intake_db, lead_id)
    assert (lead.sla_state, lead.sla_due_at) == ("cancelled", AT + WINDOWS["first_touch"])


async def test_a_late_older_event_does_not_undo_a_newer_state_and_joins_the_timeline(
    intake_db: Storage, api: httpx.AsyncClient
) -> None:
    lead_id, sla = await new_lead(intake_db)
    started, warning, met = sla.started("accept"), sla.warning("accept"), sla.met("accept", after=timedelta(minutes=13))

    await fold(intake_db, met, warning, started)  # the monitor's events, arrived backwards

    lead = await lead_of(intake_db, lead_id)
    assert (lead.sla_state, lead.sla_due_at) == ("met", AT + WINDOWS["accept"])
    timeline = (await api.get(f"/v1/leads/{lead_id}/timeline")).json()["timeline"]
    # In the order they happened, the late ones marked as not the obligation's current state.
    assert [(entry["type"], entry["details"]["current"]) for entry in timeline] == [
        ("sla.started", False),
        ("sla.warning", False),
        ("sla.met", True),
    ]


async def test_a_restart_on_reassignment_replaces_the_obligation_and_the_old_assignment_s_late_events_do_not(
    intake_db: Storage,
) -> None:
    lead_id, sla = await new_lead(intake_db)
    restart = AT + timedelta(minutes=15)
    await fold(intake_db, sla.started("accept"), sla.breached("accept"))
    await fold(intake_db, sla.started("accept", SECOND, start=restart))
    lead = await lead_of(intake_db, lead_id)
    assert lead.sla_obligations["accept"]["assignment_id"] == SECOND
    assert (lead.sla_state, lead.sla_due_at) == ("running", restart + WINDOWS["accept"])

    # The first assignment's cancellation, late: it started before the second's obligation did.
    await fold(intake_db, sla.cancelled("accept", "reassigned", after=timedelta(minutes=15)))
    await fold(intake_db, sla.warning("accept"))

    lead = await lead_of(intake_db, lead_id)
    assert (lead.sla_obligations["accept"]["assignment_id"], lead.sla_obligations["accept"]["state"]) == (
        SECOND,
        "running",
    )
    assert (lead.sla_state, lead.sla_due_at) == ("running", restart + WINDOWS["accept"])


async def test_the_same_state_told_again_adds_nothing(intake_db: Storage, api: httpx.AsyncClient) -> None:
    lead_id, sla = await new_lead(intake_db)
    await fold(intake_db, sla.started("accept"))
    before = await lead_of(intake_db, lead_id)

    await fold(intake_db, sla.started("accept"))  # a re-announcement (a new event id) after a re-drive

    after = await lead_of(intake_db, lead_id)
    assert after.updated_at == before.updated_at
    timeline = (await api.get(f"/v1/leads/{lead_id}/timeline")).json()["timeline"]
    assert [entry["type"] for entry in timeline] == ["sla.started"]


async def test_a_moved_deadline_told_again_is_kept(intake_db: Storage) -> None:
    lead_id, sla = await new_lead(intake_db)
    await fold(intake_db, sla.started("accept"))
    told = sla.started("accept").data
    # The team's calendar changed: the deadline is tomorrow morning.
    moved = new_event(
        told.model_copy(update={"due_at": told.due_at + timedelta(hours=16)}), source="leadrelay/sla-monitor"
    )

    await fold(intake_db, moved)

    lead = await lead_of(intake_db, lead_id)
    assert (lead.sla_state, lead.sla_due_at) == ("running", AT + WINDOWS["accept"] + timedelta(hours=16))


async def test_the_api_shows_each_obligation_and_the_timeline_each_sla_event(
    intake_db: Storage, api: httpx.AsyncClient
) -> None:
    lead_id, sla = await new_lead(intake_db)
    await fold(intake_db, sla.started("accept"), sla.started("first_touch"), sla.met("first_touch"))
    await fold(intake_db, sla.warning("accept"), sla.breached("accept"), sla.cancelled("first_touch", "stage_left"))

    answer = await api.get(f"/v1/leads/{lead_id}")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["sla_state"], datetime.fromisoformat(body["sla_due_at"])) == ("breached", AT + WINDOWS["accept"])
    accept = body["sla_obligations"]["accept"]
    assert (accept["state"], accept["assignment_id"], accept["rep_id"]) == ("breached", FIRST, "rep-ada")
    assert datetime.fromisoformat(accept["due_at"]) == AT + WINDOWS["accept"]
    assert datetime.fromisoformat(accept["started_at"]) == AT
    assert datetime.fromisoformat(accept["changed_at"]) == AT + WINDOWS["accept"]
    assert "seen" not in accept
    # first_touch was met at 09:05: a cancellation that says 09:03 came late, and changes nothing.
    assert body["sla_obligations"]["first_touch"]["state"] == "met"
    types = [(entry["type"], entry["details"]["obligation"]) for entry in body["timeline"]]
    assert sorted(types) == sorted(
        [
            ("sla.started", "accept"),
            ("sla.started", "first_touch"),
            ("sla.met", "first_touch"),
            ("sla.warning", "accept"),
            ("sla.breached", "accept"),
            ("sla.cancelled", "first_touch"),
        ]
    )
    [cancelled] = [entry["details"] for entry in body["timeline"] if entry["type"] == "sla.cancelled"]
    assert (cancelled["reason"], cancelled["state"], cancelled["current"]) == ("stage_left", "cancelled", False)
    [breached] = [entry["details"] for entry in body["timeline"] if entry["type"] == "sla.breached"]
    assert breached["escalation"] == ["remind", "reassign"]


async def test_leads_filter_by_their_most_urgent_obligation_s_state(intake_db: Storage, api: httpx.AsyncClient) -> None:
    warned, warned_sla = await new_lead(intake_db)
    met, met_sla = await new_lead(intake_db, "grace@navy.example")
    await fold(intake_db, warned_sla.started("accept"), warned_sla.started("first_touch"))
    await fold(intake_db, warned_sla.met("first_touch"), warned_sla.warning("accept"))
    await fold(intake_db, met_sla.started("accept"), met_sla.met("accept"))

    found: dict[str, Sequence[str]] = {}
    async with intake_db.sessions() as session:
        for state in (SlaState.WARNING, SlaState.MET, SlaState.RUNNING):
            leads = await service.list_leads(session=session, sla_state=state, limit=10)
            found[state.value] = [lead.id for lead in leads]

    assert found == {"warning": [warned], "met": [met], "running": []}
    page = await api.get("/v1/leads", params={"sla_state": "warning"})
    assert [lead["id"] for lead in page.json()["leads"]] == [warned], page.text
    refused = await api.get("/v1/leads", params={"sla_state": "late"})
    assert refused.status_code == 422
    assert "sla_state" in refused.text


def test_the_summary_orders_open_obligations_by_urgency_then_deadline() -> None:
    def entry(state: str, due_minutes: int, changed_minutes: int = 0) -> dict[str, Any]:
        return {"state": state, "due_at": (AT + timedelta(minutes=due_minutes)).isoformat(),
                "changed_at": (AT + timedelta(minutes=changed_minutes)).isoformat()}  # fmt: skip

    cases: list[tuple[dict[str, dict[str, Any]], tuple[SlaState | None, int | None]]] = [
        ({}, (None, None)),
        ({"a": entry("running", 30), "b": entry("running", 15)}, (SlaState.RUNNING, 15)),
        ({"a": entry("warning", 30), "b": entry("running", 15)}, (SlaState.WARNING, 30)),
        ({"a": entry("warning", 30), "b": entry("breached", 60)}, (SlaState.BREACHED, 60)),
        ({"a": entry("met", 30), "b": entry("running", 90)}, (SlaState.RUNNING, 90)),
        ({"a": entry("met", 30, 5), "b": entry("cancelled", 15, 3)}, (SlaState.MET, 30)),
        ({"a": entry("met", 30, 5), "b": entry("cancelled", 15, 7)}, (SlaState.CANCELLED, 15)),
    ]
    for obligations, (state, due_minutes) in cases:
        due_at = None if due_minutes is None else AT + timedelta(minutes=due_minutes)
        assert sla_summary(obligations) == (state, due_at), obligations
