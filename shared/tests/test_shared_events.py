"""CloudEvents envelope and typed payloads: every event type survives the wire unchanged."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from leadrelay.events import (
    EVENT_TYPES,
    AccountChanged,
    AgreementActivated,
    AgreementApproved,
    AgreementDrafted,
    AgreementRejected,
    AgreementSuperseded,
    ApiKeyChanged,
    AssignmentTrigger,
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
    SlaClock,
    SlaMet,
    SlaStarted,
    SlaWarning,
    TeamChanged,
    Topic,
    UnknownEventType,
    ValidationError,
    dlq_topic,
    new_event,
    parse_envelope,
    parse_event,
)
from leadrelay.stages import ActivityType, LeadStage

AT = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
DUE = AT + timedelta(minutes=5)

RECEIVED = LeadReceived(
    lead_id="lead-1",
    email="ada@analytical.example",
    first_name="Ada",
    last_name="Lovelace",
    company="Analytical Engines",
    job_title="CTO",
    phone="+44 20 7946 0000",
    country="GB",
    source="webinar",
    campaign="spring",
    # A non-UTC offset must survive too.
    received_at=datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1))),
    redrive=True,
    attributes={"utm": {"medium": "email"}, "seats": 40, "tags": ["a", "b"]},
)

ROUTING_EXPLANATION = {
    "version": "routing-2",
    "rule": "round-robin",
    "evaluated": [
        {"rule": "territory:emea", "matched": False, "reason": "country is US"},
        {"rule": "round-robin", "matched": True},
    ],
    "evaluated_omitted": 0,
    "outcome": "assigned",
    "rep_id": "rep-7",
    "team_id": "emea",
    "steps": [
        {"step": 0, "outcome": "chosen", "rep_id": "rep-7", "skipped": [{"rep_id": "rep-8", "reason": "held_before"}]}
    ],
}

SAMPLES: dict[str, EventData] = {
    "lead.received": RECEIVED,
    "lead.scored": LeadScored(
        lead_id="lead-1",
        score=87,
        stage=LeadStage.MQL,
        icp_version="icp-3",
        explanation=[ScoreCriterion(criterion="company_known", points=20, reason="company given")],
        scored_at=AT,
        lead=RECEIVED,
    ),
    "lead.assigned": LeadAssigned(
        lead_id="lead-1",
        assignment_id="asg-2",
        rep_id="rep-7",
        team_id="emea",
        rule_path=["territory:emea", "round-robin"],
        candidates=["rep-7", "rep-8"],
        routing_version="routing-2",
        assigned_at=AT,
        sequence=2,
        trigger=AssignmentTrigger.SLA_BREACH,
        previous_assignment_id="asg-1",
        previous_rep_id="rep-8",
        reason="first_touch breached",
        grade="A1",
        source="webinar",
        mql=True,
        explanation=ROUTING_EXPLANATION,
    ),
    "lead.queued": LeadQueued(
        lead_id="lead-1",
        assignment_id="asg-1",
        team_id="emea",
        rule_path=["territory:emea"],
        routing_version="routing-2",
        queued_at=AT,
        grade="B2",
        source="webinar",
        explanation={**ROUTING_EXPLANATION, "outcome": "queued", "rep_id": None},
    ),
    "lead.nurtured": LeadNurtured(
        lead_id="lead-1",
        assignment_id="asg-1",
        rule_path=["territory:emea", "not-mql"],
        routing_version="routing-2",
        nurtured_at=AT,
        reason="not an MQL yet",
        grade="D4",
        source="webinar",
        explanation={**ROUTING_EXPLANATION, "outcome": "nurtured", "rep_id": None, "team_id": None},
    ),
    "lead.activity": LeadActivity(
        lead_id="lead-1",
        rep_id="rep-7",
        activity=ActivityType.CONTACTED,
        occurred_at=AT,
        channel="call",
        previous_stage=LeadStage.SAL,
        stage=LeadStage.SAL,
        recorded_at=AT,
    ),
    "sla.started": SlaStarted(
        lead_id="lead-1",
        obligation="first_touch",
        assignment_id="asg-1",
        rep_id="rep-7",
        policy_version="sla-1",
        started_at=AT,
        due_at=DUE,
    ),
    "sla.warning": SlaWarning(
        lead_id="lead-1",
        obligation="first_touch",
        assignment_id="asg-1",
        rep_id="rep-7",
        due_at=DUE,
        remaining_seconds=59.5,
    ),
    "sla.breached": SlaBreached(
        lead_id="lead-1",
        obligation="first_touch",
        assignment_id="asg-1",
        rep_id="rep-7",
        due_at=DUE,
        breached_at=DUE,
        escalation=[EscalationStep.REMIND, EscalationStep.REASSIGN, EscalationStep.NOTIFY_MANAGER],
    ),
    "sla.met": SlaMet(
        lead_id="lead-1", obligation="first_touch", assignment_id="asg-1", rep_id="rep-7", due_at=DUE, met_at=AT
    ),
    "sla.cancelled": SlaCancelled(
        lead_id="lead-1",
        obligation="first_touch",
        assignment_id="asg-1",
        rep_id="rep-7",
        team_id="team-emea",
        grade="A1",
        source="webinar",
        policy_version="3",
        clock=SlaClock.BUSINESS,
        due_at=DUE,
        elapsed_seconds=120.0,
        elapsed_business_seconds=60.0,
        cancelled_at=AT,
        reason="stage_left",
    ),
    "account.changed": AccountChanged(
        account_id="acct-42",
        name="Analytical Engines",
        domain="analytical.example",
        owner_rep_id="rep-7",
        changed_at=AT,
        domains=["analytical.example", "analytical-engines.example"],
        industry="Software",
        employees=250,
        annual_revenue=42_000_000,
        country="GB",
        crm_id="0015g00000AbCdEAAZ",
        version=3,
    ),
    "apikey.changed": ApiKeyChanged(
        key_id="key_1",
        name="crm",
        team="integration",
        scopes=["leads:write"],
        key_hash="0" * 64,
        version=2,
        created_at=AT,
        revoked_at=AT,
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
            kind="sla", version=2, status="draft", actor_key_id="key_1", actor_team="sales", reason="why", at=AT
        )
        for data_type in (
            AgreementDrafted,
            AgreementApproved,
            AgreementRejected,
            AgreementActivated,
            AgreementSuperseded,
        )
    },
}


def test_every_event_type_has_a_sample() -> None:
    # A new event type must be added to SAMPLES, so the round trip below covers it.
    assert set(SAMPLES) == set(EVENT_TYPES)
    for event_type, data in SAMPLES.items():
        assert type(data) is EVENT_TYPES[event_type]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_round_trips_through_bytes(event_type: str) -> None:
    data = SAMPLES[event_type]
    event = new_event(data, source="/test", event_id=f"id-{event_type}")

    parsed = parse_event(event.to_bytes())

    assert parsed.id == f"id-{event_type}"
    assert parsed.type == event_type
    assert parsed.source == "/test"
    assert parsed.specversion == "1.0"
    assert parsed.time == event.time
    assert type(parsed.data) is type(data)
    assert parsed.data == data
    assert parsed.topic == data.topic
    # Accounts are keyed by account, keys by key, teams by team, agreements by kind; everything else by lead.
    expected_subject = {"account.changed": "acct-42", "apikey.changed": "key_1", "team.changed": "team-emea"}.get(
        event_type, "sla" if event_type.startswith("agreement.") else "lead-1"
    )
    assert parsed.subject == expected_subject == event.subject


def test_structured_mode_json_follows_cloudevents() -> None:
    event = new_event(SAMPLES["lead.assigned"], source="router")
    body = json.loads(event.to_bytes())
    assert body["specversion"] == "1.0"
    assert body["datacontenttype"] == "application/json"
    assert body["type"] == "lead.assigned"
    assert body["subject"] == "lead-1"
    assert body["data"]["rep_id"] == "rep-7"
    assert datetime.fromisoformat(body["time"]).utcoffset() == timedelta(0)


def test_new_event_gets_a_fresh_id_unless_given() -> None:
    first = new_event(SAMPLES["lead.activity"], source="intake")
    second = new_event(SAMPLES["lead.activity"], source="intake")
    assert first.id
    assert first.id != second.id
    assert new_event(SAMPLES["lead.activity"], source="intake", event_id="fixed").id == "fixed"


def test_topics_follow_the_payload_type() -> None:
    assert new_event(SAMPLES["lead.received"], source="s").topic is Topic.LEADS_RECEIVED
    assert new_event(SAMPLES["sla.breached"], source="s").topic is Topic.SLA_EVENTS
    assert new_event(SAMPLES["account.changed"], source="s").topic is Topic.ACCOUNTS_CHANGED
    # Every routing outcome on one topic, keyed by lead: a lead's decisions stay in order for their consumers.
    for routed in ("lead.assigned", "lead.queued", "lead.nurtured"):
        assert new_event(SAMPLES[routed], source="s").topic is Topic.LEADS_ASSIGNED


def test_routing_and_breach_records_from_before_reassignment_still_parse() -> None:
    assigned = json.loads(new_event(SAMPLES["lead.assigned"], source="router").to_bytes())
    breached = json.loads(new_event(SAMPLES["sla.breached"], source="sla-monitor").to_bytes())
    for added in (
        "sequence",
        "trigger",
        "previous_assignment_id",
        "previous_rep_id",
        "reason",
        "grade",
        "source",
        "mql",
    ):
        del assigned["data"][added]
    del assigned["data"]["explanation"]
    del breached["data"]["escalation"]

    old_assignment = parse_event(json.dumps(assigned).encode()).data
    old_breach = parse_event(json.dumps(breached).encode()).data

    assert isinstance(old_assignment, LeadAssigned)
    assert (old_assignment.sequence, old_assignment.trigger, old_assignment.explanation) == (1, "routed", None)
    assert isinstance(old_breach, SlaBreached)
    assert old_breach.escalation == []


def test_unknown_type_is_rejected() -> None:
    body = json.loads(new_event(SAMPLES["lead.activity"], source="crm").to_bytes())
    body["type"] = "lead.teleported"
    raw = json.dumps(body).encode()

    assert parse_envelope(raw).type == "lead.teleported"  # the envelope alone is fine
    with pytest.raises(UnknownEventType, match=r"lead\.teleported"):
        parse_event(raw)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda body: body["data"].pop("rep_id"), id="missing-field"),
        pytest.param(lambda body: body["data"].update(activity="teleported"), id="bad-literal"),
        pytest.param(lambda body: body["data"].update(occurred_at="yesterday"), id="bad-datetime"),
        pytest.param(lambda body: body.pop("subject"), id="missing-subject"),
        pytest.param(lambda body: body.update(specversion="0.3"), id="wrong-specversion"),
    ],
)
def test_bad_payload_is_a_validation_error(corrupt: object) -> None:
    body = json.loads(new_event(SAMPLES["lead.activity"], source="crm").to_bytes())
    corrupt(body)  # type: ignore[operator]
    with pytest.raises(ValidationError):
        parse_event(json.dumps(body).encode())


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_fields_a_consumer_does_not_know_are_ignored(event_type: str) -> None:
    body = json.loads(new_event(SAMPLES[event_type], source="s").to_bytes())
    body["data"]["added_in_a_later_version"] = {"nested": [1, 2]}
    body["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # a CloudEvents extension

    event = parse_event(json.dumps(body).encode())

    assert event.data == SAMPLES[event_type]
    assert "added_in_a_later_version" not in event.data.model_dump()


def test_payload_of_another_type_is_a_validation_error() -> None:
    body = json.loads(new_event(SAMPLES["lead.activity"], source="crm").to_bytes())
    body["type"] = "lead.scored"
    with pytest.raises(ValidationError):
        parse_event(json.dumps(body).encode())


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'{"id": "x"}', b"\xff\xfe"])
def test_garbage_is_a_validation_error(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_event(raw)


def test_score_must_be_within_0_and_100() -> None:
    with pytest.raises(ValidationError):
        LeadScored(
            lead_id="l", score=101, stage=LeadStage.MQL, icp_version="v", explanation=[], scored_at=AT, lead=RECEIVED
        )


def test_dlq_topic() -> None:
    assert dlq_topic("leads.scored") == "leads.scored.dlq"
    assert dlq_topic(Topic.SLA_EVENTS) == "sla.events.dlq"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {
                "lead_id": "lead-1",
                "rep_id": "rep-7",
                "activity": "rejected",
                "reason_code": "no-budget",
                "occurred_at": AT.isoformat(),
            },
            {"activity": ActivityType.REJECTED, "channel": None, "previous_stage": None, "stage": None},
        ),
        (
            {
                "account_id": "acct-42",
                "name": "Analytical Engines",
                "domain": "analytical.example",
                "changed_at": AT.isoformat(),
            },
            {"domain": "analytical.example", "domains": [], "country": None, "version": None},
        ),
    ],
    ids=["lead.activity", "account.changed"],
)
def test_events_of_the_first_version_still_parse(data: dict[str, object], expected: dict[str, object]) -> None:
    # Issue 7 only added optional fields to these two: what is waiting in topics and outboxes still parses.
    event_type = "lead.activity" if "lead_id" in data else "account.changed"
    raw = json.dumps(
        {"specversion": "1.0", "id": "e-1", "source": "old", "type": event_type, "subject": "s", "data": data}
    )
    parsed = parse_event(raw.encode()).data.model_dump()
    assert {field: parsed[field] for field in expected} == expected
