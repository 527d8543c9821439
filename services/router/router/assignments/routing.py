"""One routing decision, start to end: the rules' action and fallbacks tried in turn over the roster.

No database here: the roster (reps, teams, loads) is read by the caller, and the pick among
available reps goes through a `Chooser`, which keeps the rotation in the database for real
assignments (`fairness.service.StoredRotations`) and in memory for simulate and replay (`MemoryChooser`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from leadrelay.calendar import TeamCalendar
from router.assignments.models import Outcome
from router.fairness.rotation import Candidate, Pick, Rotation, Strategy, choose
from router.reps.availability import Availability, RepState, check_rep, check_teams
from router.reps.models import Rep
from router.rules.document import (
    AccountOwnerAction,
    Action,
    NurtureAction,
    PoolAction,
    QueueAction,
    RepAction,
    TeamAction,
)
from router.rules.engine import RuleDecision

WEIGHT_UNITS = 100
"""A rep's weight (a decimal, up to two places count) in the integer units the rotation takes."""
SHOWN = 20
"""How many rules, and how many candidates per step, an event's bounded explanation keeps."""
LOAD_DAYS = 7
"""A rep's load, for least loaded: the leads given to it over this many days, today included."""


class Skip(StrEnum):
    """Why a rep was not a candidate, beyond availability (`reps.availability.Unavailable`)."""

    UNKNOWN_REP = "unknown_rep"
    HELD_BEFORE = "held_before"
    """Reassignment: the rep has held this lead already."""


class StepOutcome(StrEnum):
    """What one action of the chain came to."""

    CHOSEN = "chosen"
    NOBODY_AVAILABLE = "nobody_available"
    NO_ACCOUNT_OWNER = "no_account_owner"
    UNKNOWN_TEAM = "unknown_team"
    QUEUED = "queued"
    NURTURED = "nurtured"
    NOT_FOR_REASSIGNMENT = "not_for_reassignment"
    """A queue or nurture step, passed over when reassigning (the caller goes to the team's manager)."""


@dataclass(frozen=True)
class RepCounts:
    """Leads given to a rep: today, this week (from Monday), and over the last LOAD_DAYS days (its load)."""

    today: int = 0
    week: int = 0
    load: int = 0


NOTHING_COUNTED = RepCounts()
"""The counts an uncapped rep's availability reads (none of them)."""


@dataclass(frozen=True, slots=True)
class RepProfile:
    """A rep as decisions read it: its own availability state, its teams and its weight in rotation units."""

    state: RepState
    teams: tuple[str, ...]
    weight: int


@dataclass
class Roster:
    """Reps and teams as the router sees them at one instant, and the leads each rep was given lately."""

    reps: Mapping[str, Rep]
    calendars: Mapping[str, TeamCalendar]
    members: Mapping[str, Sequence[str]]
    """Team id to its reps' ids, sorted."""
    managers: Mapping[str, str | None] = field(default_factory=dict)
    daily: dict[str, dict[date, int]] = field(default_factory=dict)
    """Rep id to leads given per local day (`local_day`), the last LOAD_DAYS days at least."""
    # Decision-speed caches (a roster is read for one run of decisions and not changed after):
    # each rep's zone, and the calendar verdict of each set of teams at the latest instant asked.
    _zones: dict[str, ZoneInfo] = field(default_factory=dict, init=False, repr=False, compare=False)
    _verdicts: dict[tuple[str, ...], Availability] = field(default_factory=dict, init=False, repr=False, compare=False)
    _verdicts_at: datetime | None = field(default=None, init=False, repr=False, compare=False)
    _profiles: dict[str, "RepProfile"] = field(default_factory=dict, init=False, repr=False, compare=False)
    _counts: dict[str, dict[date, RepCounts]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _days: dict[ZoneInfo, date] = field(default_factory=dict, init=False, repr=False, compare=False)
    _days_at: datetime | None = field(default=None, init=False, repr=False, compare=False)

    def zone(self, rep_id: str) -> ZoneInfo:
        """The timezone a rep's days count in: its first team's, else UTC."""
        zone = self._zones.get(rep_id)
        if zone is None:
            zone = self._zones[rep_id] = self._zone_of(rep_id)
        return zone

    def _zone_of(self, rep_id: str) -> ZoneInfo:
        rep = self.reps.get(rep_id)
        for team_id in rep.teams if rep else ():
            calendar = self.calendars.get(team_id)
            if calendar is not None:
                return calendar.zone
        return ZoneInfo("UTC")

    def profile(self, rep_id: str) -> "RepProfile | None":
        """What decisions read of a rep, read from its row once per roster; None for an unknown rep."""
        profile = self._profiles.get(rep_id)
        if profile is None:
            rep = self.reps.get(rep_id)
            if rep is None:
                return None
            profile = self._profiles[rep_id] = RepProfile(
                state=RepState.of(rep), teams=tuple(rep.teams), weight=weight_units(rep)
            )
        return profile

    def availability(self, rep: "Rep | RepProfile", at: datetime, counts: RepCounts) -> Availability:
        """`reps.availability.check` of the rep at `at`, its teams' calendars judged once per instant."""
        if isinstance(rep, Rep):
            profile = self.profile(rep.id)
            assert profile is not None
            rep = profile
        verdict = check_rep(rep=rep.state, at=at, assigned_today=counts.today, assigned_this_week=counts.week)
        if verdict is not None:
            return verdict
        if at != self._verdicts_at:
            self._verdicts.clear()
            self._verdicts_at = at
        teams = rep.teams
        verdict = self._verdicts.get(teams)
        if verdict is None:
            calendars = [self.calendars[team] for team in teams if team in self.calendars]
            verdict = self._verdicts[teams] = check_teams(calendars, at)
        return verdict

    def local_day(self, rep_id: str, at: datetime) -> date:
        """The rep's calendar day at `at`."""
        if at != self._days_at:
            self._days.clear()
            self._days_at = at
        zone = self.zone(rep_id)
        day = self._days.get(zone)
        if day is None:
            day = self._days[zone] = at.astimezone(zone).date()
        return day

    def counts(self, rep_id: str, at: datetime) -> RepCounts:
        """Leads given to the rep today, this week and over the last LOAD_DAYS days, as of `at`."""
        today = self.local_day(rep_id, at)
        per_day = self._counts.setdefault(rep_id, {})
        known = per_day.get(today)
        if known is None:
            known = per_day[today] = self._count(rep_id, today)
        return known

    def _count(self, rep_id: str, today: date) -> RepCounts:
        monday = today - timedelta(days=today.weekday())
        first = today - timedelta(days=LOAD_DAYS - 1)
        today_count = week = load = 0
        for day, assigned in self.daily.get(rep_id, {}).items():
            if day == today:
                today_count += assigned
            if monday <= day <= today:
                week += assigned
            if first <= day <= today:
                load += assigned
        return RepCounts(today=today_count, week=week, load=load)

    def given(self, rep_id: str, at: datetime) -> date:
        """Count one more lead for the rep on its day at `at`, and return that day."""
        day = self.local_day(rep_id, at)
        per_day = self.daily.setdefault(rep_id, {})
        per_day[day] = per_day.get(day, 0) + 1
        self._counts.pop(rep_id, None)
        return day


class Chooser(Protocol):
    """Picks one of a pool's available reps (and remembers the pick, for fairness)."""

    async def pick(self, *, pool_id: str, candidates: Sequence[Candidate], strategy: Strategy) -> Pick:
        """The chosen candidate and why each was or was not chosen."""
        ...


@dataclass
class MemoryChooser:
    """Rotations kept in memory: simulate and replay use credits without spending any stored ones."""

    rotations: dict[str, Rotation] = field(default_factory=dict)

    async def pick(self, *, pool_id: str, candidates: Sequence[Candidate], strategy: Strategy) -> Pick:
        """Pick from the in-memory rotation of `pool_id` (created empty on first use)."""
        return choose(self.rotations.setdefault(pool_id, Rotation()), pool_id=pool_id, candidates=candidates,
                      strategy=strategy)  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    """A rep named by an action who could not take the lead, and why."""

    rep_id: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {"rep_id": self.rep_id, "reason": self.reason}


@dataclass(frozen=True)
class Step:
    """One action of the chain as tried: who was skipped and why, and the pick among the rest."""

    index: int
    """0 for the rule's action, then 1, 2, ... for its fallbacks."""
    action: Action
    outcome: StepOutcome
    skipped: tuple[Skipped, ...] = ()
    pick: Pick | None = None
    rep_id: str | None = None

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready, with at most `limit` skipped reps and pick candidates (the chosen one always kept)."""
        skipped = self.skipped if limit is None else self.skipped[:limit]
        said: dict[str, Any] = {
            "step": self.index,
            "action": self.action.model_dump(mode="json", exclude={"otherwise"}, exclude_none=True),
            "outcome": self.outcome.value,
            "rep_id": self.rep_id,
            "skipped": [entry.as_dict() for entry in skipped],
            "skipped_omitted": len(self.skipped) - len(skipped),
        }
        if self.pick is not None:
            record = self.pick.as_record()
            candidates = record["candidates"]
            if limit is not None and len(candidates) > limit:
                kept = [c for c in candidates[:limit] if not c["chosen"]][: limit - 1]
                kept.append(next(c for c in candidates if c["chosen"]))
                record["candidates_omitted"] = len(candidates) - len(kept)
                record["candidates"] = kept
            said["pick"] = record
        return said


@dataclass(frozen=True)
class Routing:
    """Where one lead goes and the whole why: the rule decision and every step of its chain tried."""

    decision: RuleDecision
    outcome: Outcome | None
    """None only when reassigning and every step ran out (the caller then goes to the team's manager)."""
    steps: tuple[Step, ...]
    rep_id: str | None = None
    team_id: str | None = None
    nurture_reason: str | None = None

    @property
    def candidates(self) -> list[str]:
        """Every rep the decision considered, in the order met (skipped ones included)."""
        seen: dict[str, None] = {}
        for step in self.steps:
            for entry in step.skipped:
                seen.setdefault(entry.rep_id)
            if step.pick is not None:
                for considered in step.pick.candidates:
                    seen.setdefault(considered.rep_id)
            elif step.rep_id is not None:
                seen.setdefault(step.rep_id)
        return list(seen)

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """The explanation: the rules evaluated, each step tried and its candidates; bounded by `limit` if given."""
        said = self.decision.as_dict(limit=limit)
        said.update(
            {
                "outcome": None if self.outcome is None else self.outcome.value,
                "rep_id": self.rep_id,
                "team_id": self.team_id,
                "steps": [step.as_dict(limit=limit) for step in self.steps],
            }
        )
        return said


def weight_units(rep: Rep) -> int:
    """The rep's weight as the rotation counts it (at least 1)."""
    return max(1, round(rep.weight * WEIGHT_UNITS))


def pool_id(decision: RuleDecision, step: int, action: Action) -> str:
    """The rotation an action picks from: a team's own, or a rule's pool (stable across ruleset versions)."""
    if isinstance(action, TeamAction):
        return f"team:{action.team}"
    return f"pool:{decision.rule}" if step == 0 else f"pool:{decision.rule}/otherwise/{step}"


def _named_reps(action: Action, facts: Mapping[str, Any], roster: Roster) -> list[str] | StepOutcome:
    if isinstance(action, AccountOwnerAction):
        owner = facts.get("account.owner_rep_id")
        return [owner] if owner else StepOutcome.NO_ACCOUNT_OWNER
    if isinstance(action, RepAction):
        return [action.rep]
    if isinstance(action, PoolAction):
        return list(dict.fromkeys(action.reps))
    assert isinstance(action, TeamAction)
    if action.team not in roster.calendars:
        return StepOutcome.UNKNOWN_TEAM
    return list(roster.members.get(action.team, ()))


def _available(
    rep_ids: Sequence[str], *, roster: Roster, at: datetime, exclude: frozenset[str]
) -> tuple[list[Candidate], list[Skipped]]:
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for rep_id in rep_ids:
        profile = roster.profile(rep_id)
        if profile is None:
            skipped.append(Skipped(rep_id, Skip.UNKNOWN_REP))
            continue
        if rep_id in exclude:
            skipped.append(Skipped(rep_id, Skip.HELD_BEFORE))
            continue
        # Counting a rep's leads is the dearest check: done only for a rep with a cap, or one available.
        capped = profile.state.daily_cap is not None or profile.state.weekly_cap is not None
        counts = roster.counts(rep_id, at) if capped else NOTHING_COUNTED
        verdict = roster.availability(profile, at, counts)
        if not verdict.available:
            assert verdict.reason is not None
            skipped.append(Skipped(rep_id, verdict.reason))
            continue
        if not capped:
            counts = roster.counts(rep_id, at)
        candidates.append(Candidate(rep_id=rep_id, weight=profile.weight, load=counts.load))
    return candidates, skipped


def _team_of(action: Action, rep_id: str, roster: Roster) -> str | None:
    if isinstance(action, TeamAction):
        return action.team
    profile = roster.profile(rep_id)
    return profile.teams[0] if profile and profile.teams else None


async def route(
    *,
    decision: RuleDecision,
    facts: Mapping[str, Any],
    roster: Roster,
    chooser: Chooser,
    at: datetime,
    exclude: frozenset[str] = frozenset(),
    reassigning: bool = False,
) -> Routing:
    """Try the matched rule's action, then its fallbacks, until one takes the lead.

    A chosen rep is counted in the roster at once, so caps hold within a batch. When
    `reassigning`, reps in `exclude` are skipped and queue and nurture steps are passed over.
    """
    steps: list[Step] = []
    for index, action in enumerate((decision.action, *decision.fallbacks)):
        if isinstance(action, QueueAction | NurtureAction):
            if reassigning:
                steps.append(Step(index, action, StepOutcome.NOT_FOR_REASSIGNMENT))
                continue
            if isinstance(action, QueueAction):
                steps.append(Step(index, action, StepOutcome.QUEUED))
                return Routing(decision, Outcome.QUEUED, tuple(steps), team_id=action.team)
            steps.append(Step(index, action, StepOutcome.NURTURED))
            return Routing(decision, Outcome.NURTURED, tuple(steps), nurture_reason=action.reason)
        named = _named_reps(action, facts, roster)
        if isinstance(named, StepOutcome):
            steps.append(Step(index, action, named))
            continue
        candidates, skipped = _available(named, roster=roster, at=at, exclude=exclude)
        if not candidates:
            steps.append(Step(index, action, StepOutcome.NOBODY_AVAILABLE, tuple(skipped)))
            continue
        pick: Pick | None = None
        if isinstance(action, PoolAction | TeamAction):
            pick = await chooser.pick(pool_id=pool_id(decision, index, action), candidates=candidates,
                                      strategy=action.strategy)  # fmt: skip
            chosen = pick.rep_id
        else:
            chosen = candidates[0].rep_id
        roster.given(chosen, at)
        steps.append(Step(index, action, StepOutcome.CHOSEN, tuple(skipped), pick, chosen))
        return Routing(
            decision, Outcome.ASSIGNED, tuple(steps), rep_id=chosen, team_id=_team_of(action, chosen, roster)
        )
    return Routing(decision, None, tuple(steps))
