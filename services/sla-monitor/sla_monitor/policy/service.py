"""The SLA policy in force: the active `sla` agreement compiled once per version, or the built-in one."""

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.agreements import service as agreements
from leadrelay.agreements.models import AgreementHead
from leadrelay.events import EscalationStep, SlaClock
from leadrelay.stages import ActivityType, LeadStage
from sla_monitor.policy.document import SLA, LeadMatch, SlaDocument

BUILTIN_VERSION = "builtin"
"""The policy version timers record before marketing and sales sign an SLA."""
BUILTIN_OBLIGATION = "first_response"
RESTART = "restart"
KEEP = "keep"


@dataclass(frozen=True)
class ObligationTerms:
    """One obligation as it applies to one assignment: its window on its clock and what happens around it."""

    obligation: str
    within_seconds: float
    clock: SlaClock
    warn_at: float | None
    met_by: frozenset[ActivityType]
    stages: frozenset[LeadStage]
    escalation: tuple[EscalationStep, ...]
    on_reassignment: str
    policy_version: str


def _matches(when: LeadMatch, *, grade: str | None, source: str | None, team_id: str | None) -> bool:
    if when.grades is not None and (grade is None or not any(grade == g or grade[:1] == g for g in when.grades)):
        return False
    if when.sources is not None and source not in when.sources:
        return False
    return when.teams is None or team_id in when.teams


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy version ready to say which obligations an assignment starts."""

    version: str
    document: SlaDocument

    def terms_for(self, *, grade: str | None, source: str | None, team_id: str | None) -> list[ObligationTerms]:
        """Each obligation whose targets match the lead (its first matching target), in the document's order."""
        terms = []
        for obligation in self.document.obligations:
            target = next(
                (t for t in obligation.targets if _matches(t.when, grade=grade, source=source, team_id=team_id)), None
            )
            if target is None:
                continue
            terms.append(
                ObligationTerms(
                    obligation=obligation.name,
                    within_seconds=target.within.seconds(hours_per_business_day=self.document.hours_per_business_day),
                    clock=target.clock or obligation.clock,
                    warn_at=obligation.warn_at,
                    met_by=frozenset(obligation.met_by),
                    stages=frozenset(obligation.stages),
                    escalation=tuple(obligation.escalation),
                    on_reassignment=obligation.on_reassignment,
                    policy_version=self.version,
                )
            )
        return terms


def builtin_policy(*, first_response_seconds: float, escalation: list[EscalationStep]) -> CompiledPolicy:
    """Before an SLA is signed: a first response (any rep action) within FIRST_RESPONSE_SECONDS, around the clock."""
    rep_actions = [a for a in ActivityType if not a.is_engagement]
    document = SlaDocument.model_validate(
        {
            "obligations": [
                {
                    "name": BUILTIN_OBLIGATION,
                    "description": "Any rep action, before an SLA policy is signed.",
                    "met_by": rep_actions,
                    "clock": SlaClock.WALL,
                    "targets": [{"within": first_response_seconds}],
                    "warn_at": 0.8,
                    "escalation": escalation,
                    "on_reassignment": RESTART,
                    "stages": list(LeadStage),
                }
            ]
        }
    )
    return CompiledPolicy(version=BUILTIN_VERSION, document=document)


_ACTIVE_VERSION = select(AgreementHead.active_version).where(AgreementHead.kind == SLA.name)
"""Read once per handled run: built once, not per call."""


class Policies:
    """This process's compiled policies, one per version; the active version is read per call (one key read)."""

    def __init__(self, *, builtin: CompiledPolicy) -> None:
        self.builtin = builtin
        self._compiled: dict[int, CompiledPolicy] = {}

    async def active(self, session: AsyncSession) -> CompiledPolicy:
        """The policy in force now: the active version, or the built-in one before any is signed."""
        version = (await session.exec(_ACTIVE_VERSION)).first()
        return self.builtin if version is None else await self.version(session, version)

    async def version(self, session: AsyncSession, version: int) -> CompiledPolicy:
        """One version (any status), compiled on first use; LookupError if it does not exist."""
        compiled = self._compiled.get(version)
        if compiled is None:
            record = await agreements.get(session, kind=SLA.name, version=version)
            if record is None:
                raise LookupError(f"sla version {version} does not exist")
            document = SlaDocument.model_validate(record.version.document)
            compiled = self._compiled[version] = CompiledPolicy(version=str(version), document=document)
        return compiled
