"""CloudEvents 1.0 envelope, one typed model per event type, and the topic each type travels on."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadrelay.stages import ActivityType, LeadStage


class Topic(StrEnum):
    """Kafka topics; a dead-letter topic is `<topic>.dlq`."""

    LEADS_RECEIVED = "leads.received"
    LEADS_SCORED = "leads.scored"
    LEADS_ASSIGNED = "leads.assigned"
    LEADS_ACTIVITY = "leads.activity"
    SLA_EVENTS = "sla.events"
    ACCOUNTS_CHANGED = "accounts.changed"
    API_KEYS = "leadrelay.apikeys"
    AGREEMENTS = "leadrelay.agreements"
    TEAMS = "leadrelay.teams"


def dlq_topic(topic: str) -> str:
    """Dead-letter topic of a topic."""
    return f"{topic}.dlq"


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


class EventData(BaseModel):
    """Base of every event payload; subclasses name their CloudEvents type and topic.

    Consumers are tolerant readers: fields they do not know are ignored, so a producer may add an
    optional field without breaking anyone (see docs/events.md for the rules of evolution).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[Topic]

    def subject(self) -> str:
        """The CloudEvents subject, which is also the Kafka key."""
        raise NotImplementedError


class LeadEventData(EventData):
    """Payload about one lead: subject and key are the lead id, so a lead's events stay in order."""

    lead_id: str

    def subject(self) -> str:
        """The lead id."""
        return self.lead_id


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured JSON mode."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid4()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    data: DataT

    @property
    def topic(self) -> Topic:
        """Topic this event is published on."""
        return self.data.topic

    def to_bytes(self) -> bytes:
        """Serialize to structured-mode JSON."""
        return self.model_dump_json().encode()


class CriterionKind(StrEnum):
    """Which part of the ICP a criterion belongs to."""

    FIT = "fit"
    ENGAGEMENT = "engagement"
    DISQUALIFIER = "disqualifier"


class ScoreCriterion(BaseModel):
    """Points one ICP criterion contributed to a score, and why."""

    criterion: str
    points: int
    reason: str
    kind: CriterionKind = CriterionKind.FIT


class MatchMethod(StrEnum):
    """How a lead was matched to an account."""

    DOMAIN = "domain"
    SUBDOMAIN = "subdomain"
    NAME = "name"
    FUZZY_NAME = "fuzzy_name"


class AccountMatch(BaseModel):
    """The account a lead was matched to, how, and how sure the match is."""

    account_id: str
    method: MatchMethod
    confidence: float = Field(ge=0, le=1)
    owner_rep_id: str | None = None


class ScoreTrigger(StrEnum):
    """What made scoring score a lead (again)."""

    RECEIVED = "received"
    ENGAGEMENT = "engagement"
    ICP_ACTIVATED = "icp_activated"


class LeadReceived(LeadEventData):
    """A lead was accepted by intake (or re-driven because it never reached a routing decision)."""

    event_type: ClassVar[str] = "lead.received"
    topic: ClassVar[Topic] = Topic.LEADS_RECEIVED

    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    job_title: str | None = None
    phone: str | None = None
    country: str | None = None
    source: str
    campaign: str | None = None
    received_at: datetime
    redrive: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)
    # Added with the standard lead fields: optional, so older records still parse.
    industry: str | None = None
    employees: int | None = None
    annual_revenue: int | None = None
    website: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    crm_id: str | None = None
    marketing_opt_in: bool | None = None
    email_domain: str | None = None
    email_free_mail: bool | None = None
    email_disposable: bool | None = None
    email_lookalike: bool | None = None


class LeadScored(LeadEventData):
    """Scoring scored a lead against an ICP version."""

    event_type: ClassVar[str] = "lead.scored"
    topic: ClassVar[Topic] = Topic.LEADS_SCORED

    score: int = Field(ge=0, le=100)
    stage: LeadStage
    icp_version: str
    explanation: list[ScoreCriterion]
    scored_at: datetime
    lead: LeadReceived
    fit: int = 0
    engagement: int = 0
    grade: str | None = Field(default=None, pattern="^[A-D][1-4]$", examples=["A1"])
    mql: bool = False
    mql_reason: str | None = None
    became_mql: bool = False
    disqualified: str | None = None
    account: AccountMatch | None = None
    enriched_fields: list[str] = Field(default_factory=list)
    trigger: ScoreTrigger = ScoreTrigger.RECEIVED


class AssignmentTrigger(StrEnum):
    """What made the router (re)assign a lead."""

    ROUTED = "routed"
    """The lead's first routing decision."""
    SLA_BREACH = "sla_breach"
    """An SLA breach whose escalation says reassign."""
    MANUAL = "manual"
    """`POST /v1/assignments/{lead_id}/reassign`, or a rep picking the lead up from a queue."""


class LeadAssigned(LeadEventData):
    """The router assigned a lead to a rep (first routing, or a reassignment that says why)."""

    event_type: ClassVar[str] = "lead.assigned"
    topic: ClassVar[Topic] = Topic.LEADS_ASSIGNED

    assignment_id: str
    rep_id: str
    team_id: str | None = None
    rule_path: list[str]
    candidates: list[str]
    routing_version: str
    assigned_at: datetime
    # Added with teams, rules and reassignment: optional, so older records still parse.
    sequence: int = 1
    """1 for the lead's first assignment, then one more for each reassignment."""
    trigger: AssignmentTrigger = AssignmentTrigger.ROUTED
    previous_assignment_id: str | None = None
    previous_rep_id: str | None = None
    reason: str | None = None
    """Why a reassignment happened (the breached obligation, or the reason given by hand)."""
    grade: str | None = None
    source: str | None = None
    mql: bool | None = None
    explanation: dict[str, Any] | None = None
    """The decision, bounded: rules evaluated (at most 20), the actions tried and their candidates (at most 20 each)."""


class LeadQueued(LeadEventData):
    """The router put a lead in a team's queue, for a rep of the team to pick up by hand."""

    event_type: ClassVar[str] = "lead.queued"
    topic: ClassVar[Topic] = Topic.LEADS_ASSIGNED

    assignment_id: str
    team_id: str
    rule_path: list[str]
    routing_version: str
    queued_at: datetime
    sequence: int = 1
    trigger: AssignmentTrigger = AssignmentTrigger.ROUTED
    previous_assignment_id: str | None = None
    reason: str | None = None
    grade: str | None = None
    source: str | None = None
    explanation: dict[str, Any] | None = None


class LeadNurtured(LeadEventData):
    """The router sent a lead back to marketing (never an MQL): no rep, no SLA."""

    event_type: ClassVar[str] = "lead.nurtured"
    topic: ClassVar[Topic] = Topic.LEADS_ASSIGNED

    assignment_id: str
    rule_path: list[str]
    routing_version: str
    nurtured_at: datetime
    reason: str | None = None
    grade: str | None = None
    source: str | None = None
    explanation: dict[str, Any] | None = None


class LeadActivity(LeadEventData):
    """Something happened to a lead: a rep's or CRM's action, or a marketing engagement (through intake).

    `rep_id` is "" for engagement sent without a rep: it stays a required string so that readers of
    the first version of this event keep parsing it.
    """

    event_type: ClassVar[str] = "lead.activity"
    topic: ClassVar[Topic] = Topic.LEADS_ACTIVITY

    rep_id: str
    activity: ActivityType
    reason_code: str | None = None
    occurred_at: datetime
    channel: str | None = None
    previous_stage: LeadStage | None = None
    stage: LeadStage | None = None
    recorded_at: datetime | None = None


class EscalationStep(StrEnum):
    """A step of an SLA breach's escalation ladder."""

    REMIND = "remind"
    REASSIGN = "reassign"
    NOTIFY_MANAGER = "notify_manager"


class SlaClock(StrEnum):
    """What an obligation's deadline is counted in."""

    WALL = "wall"
    """Around the clock: every second counts."""
    BUSINESS = "business"
    """The owning team's working hours in its timezone, minus its holidays (from `team.changed`)."""


class SlaEventData(LeadEventData):
    """What every sla.* event says about its obligation: which, whose, under which policy, and how long so far.

    The fields after `rep_id` were added with the SLA policy; optional, so records of the placeholder still parse.
    """

    obligation: str
    assignment_id: str
    rep_id: str
    team_id: str | None = None
    grade: str | None = None
    source: str | None = None
    policy_version: str | None = None
    clock: SlaClock = SlaClock.WALL
    due_at: datetime
    elapsed_seconds: float | None = None
    """Wall seconds from the obligation's start to this event."""
    elapsed_business_seconds: float | None = None
    """Business seconds on the owning team's clock from the start to this event (= wall seconds on a 24/7 clock)."""


class SlaStarted(SlaEventData):
    """The sla-monitor started a timer for an obligation."""

    event_type: ClassVar[str] = "sla.started"
    topic: ClassVar[Topic] = Topic.SLA_EVENTS

    started_at: datetime
    warn_at: datetime | None = None
    within_seconds: float | None = None
    """The obligation's window, in seconds of its clock."""


class SlaWarning(SlaEventData):
    """An obligation is close to its deadline (the policy's `warn_at` share of its window has passed)."""

    event_type: ClassVar[str] = "sla.warning"
    topic: ClassVar[Topic] = Topic.SLA_EVENTS

    remaining_seconds: float
    warned_at: datetime | None = None


class SlaBreached(SlaEventData):
    """An obligation passed its deadline unmet."""

    event_type: ClassVar[str] = "sla.breached"
    topic: ClassVar[Topic] = Topic.SLA_EVENTS

    breached_at: datetime
    escalation: list[EscalationStep] = Field(default_factory=list)
    """What the breach escalates to, in order (the SLA policy's ladder); the router acts on every step."""


class SlaMet(SlaEventData):
    """An obligation was met before its deadline."""

    event_type: ClassVar[str] = "sla.met"
    topic: ClassVar[Topic] = Topic.SLA_EVENTS

    met_at: datetime
    activity: ActivityType | None = None
    """The activity that met it."""


class SlaCancelled(SlaEventData):
    """An obligation closed unmet and unbreached: the lead left the stages where it applies, or was reassigned."""

    event_type: ClassVar[str] = "sla.cancelled"
    topic: ClassVar[Topic] = Topic.SLA_EVENTS

    cancelled_at: datetime
    reason: str
    """`stage_left` (the lead moved to a stage the obligation does not apply in) or `reassigned`."""


class AccountChanged(EventData):
    """An account (and its owner) was created or changed by a CRM sync; keyed by account id."""

    event_type: ClassVar[str] = "account.changed"
    topic: ClassVar[Topic] = Topic.ACCOUNTS_CHANGED

    account_id: str
    name: str
    domain: str | None = None
    owner_rep_id: str | None = None
    changed_at: datetime
    domains: list[str] = Field(default_factory=list)
    industry: str | None = None
    employees: int | None = None
    annual_revenue: int | None = None
    country: str | None = None
    crm_id: str | None = None
    version: int | None = None

    def subject(self) -> str:
        """Accounts are keyed by account id."""
        return self.account_id


class ApiKeyChanged(EventData):
    """The state of one API key, announced by intake (the key registry) to every service.

    A state transfer, not a delta: a service stores the key as announced unless it already holds a
    later `version`, so a re-announcement or a redelivery changes nothing. Carries the secret's
    SHA-256 hash, never the secret.
    """

    event_type: ClassVar[str] = "apikey.changed"
    topic: ClassVar[Topic] = Topic.API_KEYS

    key_id: str
    name: str
    team: str
    scopes: list[str]
    key_hash: str
    version: int
    created_at: datetime
    revoked_at: datetime | None = None
    changed_at: datetime

    def subject(self) -> str:
        """Keyed by key id, so one key's changes stay in order."""
        return self.key_id


class WorkingInterval(BaseModel):
    """Open from `start` to `end`, local `HH:MM` in the team's timezone (`end` may be 24:00)."""

    start: str
    end: str


class HolidayCalendar(BaseModel):
    """Public holidays of a country (ISO 3166-1 alpha-2) and subdivision, as the `holidays` package has them."""

    country: str
    subdivision: str | None = None


class TeamChanged(EventData):
    """The whole state of one team, announced by router whenever it changes; keyed by team id.

    A state transfer carrying the full business calendar (timezone, working hours, holiday
    calendar), so the sla-monitor runs business clocks without reading router's tables: keep the
    highest `version` per team.
    """

    event_type: ClassVar[str] = "team.changed"
    topic: ClassVar[Topic] = Topic.TEAMS

    team_id: str
    name: str
    timezone: str
    working_hours: dict[str, list[WorkingInterval]] = Field(default_factory=dict)
    holidays: HolidayCalendar | None = None
    manager_rep_id: str | None = None
    version: int
    changed_at: datetime

    def subject(self) -> str:
        """Keyed by team id, so one team's changes stay in order."""
        return self.team_id


class AgreementEventData(EventData):
    """A transition of one version of an agreement (ICP, routing rules, SLA); keyed by kind."""

    kind: str
    version: int
    status: str
    actor_key_id: str | None = None
    actor_name: str | None = None
    actor_team: str | None = None
    reason: str | None = None
    at: datetime

    def subject(self) -> str:
        """Keyed by kind, so a kind's transitions stay in order."""
        return self.kind


class AgreementDrafted(AgreementEventData):
    """A new version of an agreement was drafted."""

    event_type: ClassVar[str] = "agreement.drafted"
    topic: ClassVar[Topic] = Topic.AGREEMENTS


class AgreementApproved(AgreementEventData):
    """A team approved a version."""

    event_type: ClassVar[str] = "agreement.approved"
    topic: ClassVar[Topic] = Topic.AGREEMENTS


class AgreementRejected(AgreementEventData):
    """A team rejected a version; it will never activate."""

    event_type: ClassVar[str] = "agreement.rejected"
    topic: ClassVar[Topic] = Topic.AGREEMENTS


class AgreementActivated(AgreementEventData):
    """Every required team approved: this version is now the one in force."""

    event_type: ClassVar[str] = "agreement.activated"
    topic: ClassVar[Topic] = Topic.AGREEMENTS


class AgreementSuperseded(AgreementEventData):
    """A newer version became active; this one is no longer in force."""

    event_type: ClassVar[str] = "agreement.superseded"
    topic: ClassVar[Topic] = Topic.AGREEMENTS


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.event_type: cls
    for cls in (
        LeadReceived,
        LeadScored,
        LeadAssigned,
        LeadQueued,
        LeadNurtured,
        LeadActivity,
        SlaStarted,
        SlaWarning,
        SlaBreached,
        SlaMet,
        SlaCancelled,
        AccountChanged,
        ApiKeyChanged,
        TeamChanged,
        AgreementDrafted,
        AgreementApproved,
        AgreementRejected,
        AgreementActivated,
        AgreementSuperseded,
    )
}


class UnknownEventType(ValueError):
    """The envelope names a type this library does not know."""


_EVENT_CLASSES: dict[Any, type[CloudEvent[Any]]] = {}


def event_class(data_type: Any) -> type[CloudEvent[Any]]:
    """CloudEvent parametrised by a payload class, built once per process.

    Pydantic keeps its parametrised classes only weakly: a garbage collection drops them and the
    next event would build the class again (about 0.1 ms), so they are kept here.
    """
    cls = _EVENT_CLASSES.get(data_type)
    if cls is None:
        cls = _EVENT_CLASSES[data_type] = CloudEvent[data_type]
    return cls


def new_event(data: DataT, *, source: str, event_id: str | None = None) -> CloudEvent[DataT]:
    """Wrap a payload in a CloudEvent whose type and subject follow from the payload."""
    kwargs: dict[str, Any] = {"id": event_id} if event_id else {}
    # Parametrised by the payload's class so the payload serializes with all of its fields.
    cls = cast("type[CloudEvent[DataT]]", event_class(type(data)))
    return cls(source=source, type=data.event_type, subject=data.subject(), data=data, **kwargs)


def parse_envelope(raw: bytes) -> CloudEvent[Any]:
    """Parse the CloudEvents envelope, leaving the payload untyped; raises ValidationError."""
    return event_class(Any).model_validate_json(raw)


def parse_event(raw: bytes) -> CloudEvent[EventData]:
    """Parse structured-mode JSON into a CloudEvent with its typed payload.

    Raises ValidationError (bad envelope or payload) or UnknownEventType.
    """
    envelope = parse_envelope(raw)
    data_type = EVENT_TYPES.get(envelope.type)
    if data_type is None:
        raise UnknownEventType(envelope.type)
    return parse_as(raw, data_type)


def parse_as(raw: bytes, data_type: type[DataT]) -> CloudEvent[DataT]:
    """Parse structured-mode JSON whose type is already known; raises ValidationError."""
    return cast("CloudEvent[DataT]", event_class(data_type).model_validate_json(raw))


__all__ = [
    "EVENT_TYPES",
    "AccountChanged",
    "AccountMatch",
    "AgreementActivated",
    "AgreementApproved",
    "AgreementDrafted",
    "AgreementEventData",
    "AgreementRejected",
    "AgreementSuperseded",
    "ApiKeyChanged",
    "AssignmentTrigger",
    "CloudEvent",
    "CriterionKind",
    "EscalationStep",
    "EventData",
    "HolidayCalendar",
    "LeadActivity",
    "LeadAssigned",
    "LeadEventData",
    "LeadNurtured",
    "LeadQueued",
    "LeadReceived",
    "LeadScored",
    "MatchMethod",
    "ScoreCriterion",
    "ScoreTrigger",
    "SlaBreached",
    "SlaMet",
    "SlaStarted",
    "SlaWarning",
    "TeamChanged",
    "Topic",
    "UnknownEventType",
    "ValidationError",
    "WorkingInterval",
    "dlq_topic",
    "new_event",
    "parse_as",
    "parse_envelope",
    "parse_event",
    "utcnow",
]
