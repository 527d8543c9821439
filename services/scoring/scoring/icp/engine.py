"""The ICP made executable: a document compiled once, then evaluated per lead.

CONTRACT (issue 8): the scores pipeline and the impact preview call only `compile_icp`,
`CompiledIcp.evaluate`, `Engagement`, `Evaluation` and `DEFAULT_VERSION`/`default_icp`. The engine
work replaces the bodies below, keeping these names and signatures.

`facts` is what is known about a lead when it is scored: every `LeadReceived` field at the top level
(`email_domain`, `industry`, `employees`, `country`, `job_title`, `email_free_mail`, ...), after the
matched account filled the gaps; `attributes` (the lead's free-form values) as a nested dict; and,
when an account matched, `account` as a nested dict of its fields (`name`, `domains`, `industry`,
`employees`, `annual_revenue`, `country`, `owner_rep_id`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadrelay.events import ScoreCriterion
from leadrelay.stages import ActivityType
from scoring.icp.document import IcpDocument

DEFAULT_VERSION = "default"
"""The ICP version leads are scored under before any ICP has been signed."""


@dataclass(frozen=True)
class Engagement:
    """One thing the person did, as the ICP weighs it (points decay with age)."""

    activity: ActivityType
    occurred_at: datetime


@dataclass(frozen=True)
class Evaluation:
    """What the ICP says about one lead: subtotals, bands, the MQL decision and every criterion's points."""

    fit: int
    engagement: int
    fit_grade: str
    engagement_grade: int
    mql: bool
    mql_reason: str
    criteria: list[ScoreCriterion] = field(default_factory=list)
    disqualified: str | None = None

    @property
    def grade(self) -> str:
        """The A1-D4 matrix cell."""
        return f"{self.fit_grade}{self.engagement_grade}"

    @property
    def score(self) -> int:
        """Fit plus engagement, within 0-100 (the single number older consumers read)."""
        return max(0, min(100, self.fit + self.engagement))


@dataclass(frozen=True)
class CompiledIcp:
    """An ICP version ready to evaluate leads quickly."""

    version: str
    document: IcpDocument

    def evaluate(self, facts: Mapping[str, Any], engagements: Sequence[Engagement], *, now: datetime) -> Evaluation:
        """Grade one lead as of `now` (provisional: equals/in criteria and a threshold, no engagement)."""
        del engagements, now
        criteria = []
        for criterion in self.document.criteria:
            value = facts.get(criterion.field)
            hit = value == criterion.equals if criterion.equals is not None else value in (criterion.in_ or [])
            reason = f"{criterion.field} matches" if hit else f"{criterion.field} does not match"
            criteria.append(
                ScoreCriterion(criterion=criterion.name, points=criterion.points if hit else 0, reason=reason)
            )
        fit = sum(item.points for item in criteria)
        mql = fit >= self.document.mql_threshold
        reason = f"fit {fit} {'>=' if mql else '<'} threshold {self.document.mql_threshold}"
        return Evaluation(fit, 0, "A" if mql else "D", 4, mql, reason, criteria)


def compile_icp(document: IcpDocument, *, version: str) -> CompiledIcp:
    """Prepare a document for evaluation (regexes, keyword tables and bands built once)."""
    return CompiledIcp(version=version, document=document)


def default_icp() -> CompiledIcp:
    """The ICP in force before marketing and sales sign one."""
    return compile_icp(IcpDocument(criteria=[], mql_threshold=0), version=DEFAULT_VERSION)
