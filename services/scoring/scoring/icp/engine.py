"""The ICP made executable: a document compiled once into closures and tables, then evaluated per lead.

CONTRACT (issue 8): the scores pipeline and the impact preview call only `compile_icp`,
`CompiledIcp.evaluate`, `Engagement`, `Evaluation` and `DEFAULT_VERSION`/`default_icp`.

`facts` is what is known about a lead when it is scored: every `LeadReceived` field at the top level
(`email_domain`, `industry`, `employees`, `country`, `job_title`, `email_free_mail`, ...), after the
matched account filled the gaps; `attributes` (the lead's free-form values) as a nested dict; and,
when an account matched, `account` as a nested dict of its fields (`name`, `domains`, `industry`,
`employees`, `annual_revenue`, `country`, `owner_rep_id`).
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

from leadrelay.events import CriterionKind, ScoreCriterion
from leadrelay.stages import ActivityType
from scoring.icp.document import (
    FIT_GRADES,
    BandsCriterion,
    ContainsAnyCriterion,
    ContainsAnyDisqualifier,
    DomainCriterion,
    DomainDisqualifier,
    ExistsCriterion,
    ExistsDisqualifier,
    FlagCriterion,
    FlagDisqualifier,
    IcpDocument,
    InCriterion,
    InDisqualifier,
    KeywordsCriterion,
    KeywordsDisqualifier,
    RegionCriterion,
    RegionDisqualifier,
    engagement_thresholds,
    fit_thresholds,
)
from scoring.icp.regions import countries_of

DEFAULT_VERSION = "default"
"""The ICP version leads are scored under before any ICP has been signed."""

ENGAGEMENT_CAP = "engagement_cap"
"""The criterion that takes back engagement points above the cap."""

SECONDS_PER_DAY = 86_400.0
MAX_REASON = 500

Facts = Mapping[str, Any]
Test = Callable[[Any], tuple[bool, str]]
"""Reads a value: whether it matches, and a short reason either way."""


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
class _Alternative:
    name: str
    fit_rank: int
    engagement_grade: int
    activity: str | None
    within_seconds: float | None

    def unmet(self, fit_grade: str, engagement_grade: int, done: Mapping[str, float]) -> str | None:
        """What this alternative lacks (None: it holds); `done` maps activities to the age of the newest."""
        if FIT_GRADES.index(fit_grade) > self.fit_rank:
            return f"fit {fit_grade} below {FIT_GRADES[self.fit_rank]}"
        if engagement_grade > self.engagement_grade:
            return f"engagement {engagement_grade} below {self.engagement_grade}"
        if self.activity is not None:
            age = done.get(self.activity)
            if age is None or (self.within_seconds is not None and age > self.within_seconds):
                window = "" if self.within_seconds is None else f" in {self.within_seconds / SECONDS_PER_DAY:g} days"
                return f"no {self.activity}{window}"
        return None

    def holds(self, fit_rank: int, engagement_grade: int, done: Mapping[str, float]) -> bool:
        """Whether this alternative holds (`unmet` without the words)."""
        if fit_rank > self.fit_rank or engagement_grade > self.engagement_grade:
            return False
        if self.activity is None:
            return True
        age = done.get(self.activity)
        return age is not None and (self.within_seconds is None or age <= self.within_seconds)

    def describe(self, fit_grade: str, engagement_grade: int) -> str:
        parts = [f"fit {fit_grade}", f"engagement {engagement_grade}"]
        if self.activity is not None:
            parts.append(self.activity)
        return f"{self.name}: {', '.join(parts)}"


_FIELDS_SET = frozenset(ScoreCriterion.model_fields)
_new = object.__new__
_set = object.__setattr__


def _criterion(name: str, points: int, reason: str, kind: CriterionKind) -> ScoreCriterion:
    """A `ScoreCriterion` built without validation: what `model_construct` does, at a tenth of its cost.

    Every value comes from the compiled document or from the engine itself, already of the right
    type; a test keeps the result equal to a validated one.
    """
    criterion = _new(ScoreCriterion)
    _set(criterion, "__dict__", {"criterion": name, "points": points, "reason": reason, "kind": kind})
    _set(criterion, "__pydantic_fields_set__", _FIELDS_SET)
    _set(criterion, "__pydantic_extra__", None)
    _set(criterion, "__pydantic_private__", None)
    return criterion


@cache
def _no_engagement(activity: str) -> ScoreCriterion:
    return _criterion(activity, 0, "none", CriterionKind.ENGAGEMENT)


@lru_cache(maxsize=1024)
def _capped(total: int, cap: int) -> ScoreCriterion:
    over = max(0, total - cap)
    reason = f"{total} capped at {cap}" if over else f"{total} within cap {cap}"
    return _criterion(ENGAGEMENT_CAP, -over, reason, CriterionKind.ENGAGEMENT)


CACHE_SIZE = 512
"""Outcomes each criterion remembers by value, the first seen (common values come early: countries, sizes, titles).

Once full it remembers no more rather than forget: evicting would rebuild the same outcomes over
and over on fields with many distinct values, where remembering cannot help anyway.
"""

T = TypeVar("T")


def _remembered(path: str, outcome: Callable[[Any], T]) -> Callable[[Facts], T]:
    """`outcome(value of path)`, remembered per value: building a criterion costs more than finding it again."""
    seen: dict[tuple[type, Any], T] = {}

    def decided(value: Any) -> T:
        key = (value.__class__, value)
        try:
            known = seen.get(key)
        except TypeError:  # a list or dict value: not remembered
            return outcome(value)
        if known is not None:
            return known
        result = outcome(value)
        if len(seen) < CACHE_SIZE:
            seen[key] = result
        return result

    head, _, rest = path.partition(".")
    if rest and head in ("attributes", "account"):

        def nested(facts: Facts) -> T:
            inner = facts.get(head)
            return decided(inner.get(rest) if isinstance(inner, dict) else None)

        return nested

    def top_level(facts: Facts) -> T:
        # The common case inlined: one call per criterion and lead.
        value = facts.get(path)
        key = (value.__class__, value)
        try:
            known = seen.get(key)
        except TypeError:
            return outcome(value)
        return known if known is not None else decided(value)

    return top_level


@dataclass(frozen=True)
class CompiledIcp:
    """An ICP version ready to evaluate leads quickly."""

    version: str
    document: IcpDocument
    _fit: tuple[Callable[[Facts], ScoreCriterion], ...] = field(repr=False, default=())
    _disqualifiers: tuple[Callable[[Facts], tuple[ScoreCriterion, str | None]], ...] = field(repr=False, default=())
    _engagement_points: Mapping[str, int] = field(repr=False, default_factory=dict)
    _half_life_seconds: float | None = field(repr=False, default=None)
    _cap: int | None = field(repr=False, default=None)
    _fit_bands: tuple[tuple[str, float], ...] = field(repr=False, default=())
    _engagement_bands: tuple[tuple[int, float], ...] = field(repr=False, default=())
    _alternatives: tuple[_Alternative, ...] = field(repr=False, default=())

    def evaluate(self, facts: Facts, engagements: Sequence[Engagement], *, now: datetime) -> Evaluation:
        """Grade one lead as of `now`: every criterion's points and why, the A1-D4 cell and the MQL decision.

        The `ScoreCriterion` objects are shared between evaluations with the same outcome: read them,
        never change them.
        """
        criteria = [run(facts) for run in self._fit]
        fit = sum(criterion.points for criterion in criteria)
        disqualified = None
        for run_disqualifier in self._disqualifiers:
            criterion, said = run_disqualifier(facts)
            if said is not None and disqualified is None:
                disqualified = said
            criteria.append(criterion)
        engagement, newest = self._engagement(engagements, now, criteria)
        fit_grade = "D" if disqualified else next(grade for grade, least in self._fit_bands if fit >= least)
        engagement_grade = next(grade for grade, least in self._engagement_bands if engagement >= least)
        if disqualified:
            mql, mql_reason = False, f"disqualified ({disqualified})"
        else:
            mql, mql_reason = self._mql(fit_grade, engagement_grade, newest)
        return Evaluation(
            fit, engagement, fit_grade, engagement_grade, mql, mql_reason[:MAX_REASON], criteria, disqualified
        )

    def decide(self, facts: Facts, engagements: Sequence[Engagement], *, now: datetime) -> tuple[str, bool]:
        """The grade and the MQL decision alone, as `evaluate` would give them, without the explanation (faster)."""
        fit = sum(run(facts).points for run in self._fit)
        if any(run(facts)[1] is not None for run in self._disqualifiers):
            engagement, _ = self._engagement_total(engagements, now)
            return f"D{next(grade for grade, least in self._engagement_bands if engagement >= least)}", False
        engagement, newest = self._engagement_total(engagements, now)
        fit_grade = next(grade for grade, least in self._fit_bands if fit >= least)
        engagement_grade = next(grade for grade, least in self._engagement_bands if engagement >= least)
        rank = FIT_GRADES.index(fit_grade)
        mql = any(alternative.holds(rank, engagement_grade, newest) for alternative in self._alternatives)
        return f"{fit_grade}{engagement_grade}", mql

    def _engagement_total(self, engagements: Sequence[Engagement], now: datetime) -> tuple[int, dict[str, float]]:
        """`_engagement`'s total and newest ages, without the criteria."""
        if not engagements:
            return 0, {}
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        sums: dict[str, float] = {}
        newest: dict[str, float] = {}
        half_life = self._half_life_seconds
        for item in engagements:
            occurred = item.occurred_at if item.occurred_at.tzinfo else item.occurred_at.replace(tzinfo=UTC)
            age = max(0.0, (now - occurred).total_seconds())
            activity = str(item.activity)
            if age < newest.get(activity, float("inf")):
                newest[activity] = age
            points = self._engagement_points.get(activity)
            if points is not None:
                decayed = points if half_life is None else points * 0.5 ** (age / half_life)
                sums[activity] = sums.get(activity, 0.0) + decayed
        total = sum(round(value) for value in sums.values())
        return (total if self._cap is None else min(total, self._cap)), newest

    def _engagement(
        self, engagements: Sequence[Engagement], now: datetime, criteria: list[ScoreCriterion]
    ) -> tuple[int, dict[str, float]]:
        """Decayed points per engagement type (added to `criteria`), their total, and the newest age per type."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        newest: dict[str, float] = {}
        half_life = self._half_life_seconds
        for item in engagements:
            occurred = item.occurred_at if item.occurred_at.tzinfo else item.occurred_at.replace(tzinfo=UTC)
            age = max(0.0, (now - occurred).total_seconds())
            activity = str(item.activity)
            if age < newest.get(activity, float("inf")):
                newest[activity] = age
            points = self._engagement_points.get(activity)
            if points is None:
                continue
            counts[activity] = counts.get(activity, 0) + 1
            sums[activity] = sums.get(activity, 0.0) + (
                points if half_life is None else points * 0.5 ** (age / half_life)
            )
        total = 0
        for activity in self._engagement_points:
            count = counts.get(activity, 0)
            if not count:
                criteria.append(_no_engagement(activity))
                continue
            points = round(sums[activity])
            total += points
            days = newest[activity] / SECONDS_PER_DAY
            reason = f"{count}x, newest {days:.1f} days ago" if half_life else f"{count}x"
            criteria.append(_criterion(activity, points, reason, CriterionKind.ENGAGEMENT))
        if self._cap is not None:
            capped = _capped(total, self._cap)
            criteria.append(capped)
            total += capped.points
        return total, newest

    def _mql(self, fit_grade: str, engagement_grade: int, newest: Mapping[str, float]) -> tuple[bool, str]:
        misses = []
        for alternative in self._alternatives:
            unmet = alternative.unmet(fit_grade, engagement_grade, newest)
            if unmet is None:
                return True, alternative.describe(fit_grade, engagement_grade)
            misses.append(f"{alternative.name}: {unmet}")
        return False, "; ".join(misses)


def compile_icp(document: IcpDocument, *, version: str) -> CompiledIcp:
    """Prepare a document for evaluation (regexes, keyword tables and bands built once)."""
    fit = tuple(_compile_fit(criterion) for criterion in document.fit)
    disqualifiers = tuple(_compile_disqualifier(item) for item in document.disqualifiers)
    rules = document.engagement
    fit_needed, engagement_needed = fit_thresholds(document.grades), engagement_thresholds(document.grades)
    alternatives = tuple(
        _Alternative(
            name=alternative.name,
            fit_rank=FIT_GRADES.index(alternative.fit_at_least),
            engagement_grade=alternative.engagement_at_least,
            activity=alternative.activity,
            within_seconds=None if alternative.within_days is None else alternative.within_days * SECONDS_PER_DAY,
        )
        for alternative in document.mql.any
    )
    return CompiledIcp(
        version=version,
        document=document,
        _fit=fit,
        _disqualifiers=disqualifiers,
        _engagement_points=dict(rules.points),
        _half_life_seconds=None if rules.half_life_days is None else rules.half_life_days * SECONDS_PER_DAY,
        _cap=rules.cap,
        _fit_bands=tuple(fit_needed.items()),
        _engagement_bands=tuple(engagement_needed.items()),
        _alternatives=alternatives,
    )


def _missing(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _show(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


_SEQUENCES = (list, tuple, set)


def _items(value: Any) -> list[str]:
    """A list value, or a comma-separated text, as case-folded items."""
    if isinstance(value, _SEQUENCES):
        return [str(item).strip().casefold() for item in value]
    return [item.strip().casefold() for item in str(value).split(",")]


def _host(value: Any) -> str:
    text = str(value).strip().lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if "/" in text:
        text = urlsplit(text if "://" in text else f"//{text}").hostname or ""
    return text.removeprefix("www.").rstrip(".")


def _compile_test(spec: Any, path: str) -> Test:
    """The test a criterion or disqualifier applies to its field's value."""
    if isinstance(spec, InCriterion | InDisqualifier):
        wanted = frozenset(value.strip().casefold() for value in spec.values)

        def is_in(value: Any) -> tuple[bool, str]:
            if _missing(value):
                return False, f"no {path}"
            hit = (
                any(item in wanted for item in _items(value))
                if isinstance(value, list)
                else (str(value).strip().casefold() in wanted)
            )
            return hit, f"{path} {_show(value)} {'in' if hit else 'not in'} list"

        return is_in
    if isinstance(spec, DomainCriterion | DomainDisqualifier):
        domains = frozenset(_host(domain) for domain in spec.domains)
        below = tuple(f".{domain}" for domain in domains)

        def in_domain(value: Any) -> tuple[bool, str]:
            if _missing(value):
                return False, f"no {path}"
            for host in map(_host, value if isinstance(value, list) else [value]):
                if host in domains or host.endswith(below):
                    listed = host if host in domains else next(d for d in domains if host.endswith(f".{d}"))
                    return True, f"{path} {host} under {listed}"
            return False, f"{path} {_show(value)} not listed"

        return in_domain
    if isinstance(spec, RegionCriterion | RegionDisqualifier):
        codes = countries_of(spec.regions, spec.countries)
        label = "+".join(
            [*(region.upper() for region in spec.regions), *(["listed countries"] if spec.countries else [])]
        )

        def in_region(value: Any) -> tuple[bool, str]:
            if _missing(value):
                return False, f"no {path}"
            code = str(value).strip().upper()
            hit = code in codes
            return hit, f"{path} {_show(code)} {'in' if hit else 'not in'} {label}"

        return in_region
    if isinstance(spec, ContainsAnyCriterion | ContainsAnyDisqualifier):
        wanted = frozenset(value.strip().casefold() for value in spec.values)

        def contains_any(value: Any) -> tuple[bool, str]:
            if _missing(value):
                return False, f"no {path}"
            found = [item for item in _items(value) if item in wanted]
            return (True, f"{path} has {_show(found[0])}") if found else (False, f"{path} has none listed")

        return contains_any
    if isinstance(spec, FlagCriterion | FlagDisqualifier):
        equals = spec.equals
        yes, no = f"{path} is {str(equals).lower()}", f"{path} is {str(not equals).lower()}"

        def flag(value: Any) -> tuple[bool, str]:
            if value is None:
                return False, f"no {path}"
            hit = _truthy(value) is equals
            return hit, yes if hit else no

        return flag
    if isinstance(spec, ExistsCriterion | ExistsDisqualifier):
        given, absent = f"{path} given", f"no {path}"
        return lambda value: (False, absent) if _missing(value) else (True, given)
    if isinstance(spec, KeywordsDisqualifier):
        pattern = _words_pattern(tuple(spec.words))

        def has_words(value: Any) -> tuple[bool, str]:
            if _missing(value):
                return False, f"no {path}"
            found = pattern.search(str(value))
            return (True, f"{path} says {_show(found.group(0).lower())}") if found else (False, f"{path} clear")

        return has_words
    raise TypeError(f"no test for {type(spec).__name__}")  # pragma: no cover - the document's union is closed


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y")
    return bool(value)


@cache
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of the words or phrases as whole words, case-insensitive (`vp` matches "VP Sales", not "MVP")."""
    alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _compile_fit(criterion: Any) -> Callable[[Facts], ScoreCriterion]:
    name, path = criterion.name, criterion.field

    def scored(points: int, reason: str) -> ScoreCriterion:
        return _criterion(name, points, reason, CriterionKind.FIT)

    if isinstance(criterion, BandsCriterion):
        bands = tuple((band.min, band.max, band.points, _span(band.min, band.max)) for band in criterion.bands)

        def banded(raw: Any) -> ScoreCriterion:
            value = _number(raw)
            if value is None:
                return scored(0, f"no {path}")
            for low, high, points, span in bands:
                if (low is None or value >= low) and (high is None or value <= high):
                    return scored(points, f"{path} {value:g} in band {span}")
            return scored(0, f"{path} {value:g} in no band")

        return _remembered(path, banded)
    if isinstance(criterion, KeywordsCriterion):
        groups = tuple((group.label, group.points, _words_pattern(tuple(group.words))) for group in criterion.groups)

        def keywords(value: Any) -> ScoreCriterion:
            if _missing(value):
                return scored(0, f"no {path}")
            text = str(value)
            for label, points, pattern in groups:
                found = pattern.search(text)
                if found:
                    return scored(points, f"{path} {label} ({found.group(0).lower()!r})")
            return scored(0, f"{path} {_show(text)} matches no group")

        return _remembered(path, keywords)
    test, points = _compile_test(criterion, path), criterion.points

    def tested(value: Any) -> ScoreCriterion:
        hit, reason = test(value)
        return scored(points if hit else 0, reason)

    return _remembered(path, tested)


def _compile_disqualifier(item: Any) -> Callable[[Facts], tuple[ScoreCriterion, str | None]]:
    test, name, why = _compile_test(item, item.field), item.name, item.reason

    def disqualifies(value: Any) -> tuple[ScoreCriterion, str | None]:
        hit, reason = test(value)
        if hit:
            return _criterion(name, 0, reason, CriterionKind.DISQUALIFIER), f"{name}: {why or reason}"
        return _criterion(name, 0, f"not met ({reason})", CriterionKind.DISQUALIFIER), None

    return _remembered(item.field, disqualifies)


def _span(low: int | None, high: int | None) -> str:
    if low is None:
        return f"up to {high}"
    return f"{low}+" if high is None else f"{low}-{high}"


_NUMBERS = (int, float)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, _NUMBERS):
        return value
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return None


DEFAULT_DOCUMENT: dict[str, Any] = {
    "fit": [
        {"name": "seniority", "type": "keywords", "field": "job_title", "groups": [
            {"label": "executive", "words": ["ceo", "cto", "cfo", "cmo", "coo", "cio", "chief", "founder", "owner",
                                             "president"], "points": 25},
            {"label": "vp", "words": ["vp", "svp", "evp", "vice president"], "points": 20},
            {"label": "director", "words": ["director", "head"], "points": 15},
            {"label": "manager", "words": ["manager", "lead"], "points": 10},
        ]},
        {"name": "company_size", "type": "bands", "field": "employees", "bands": [
            {"min": 10, "max": 49, "points": 5},
            {"min": 50, "max": 999, "points": 15},
            {"min": 1000, "points": 20},
        ]},
        {"name": "company_given", "type": "exists", "field": "company", "points": 10},
        {"name": "industry_given", "type": "exists", "field": "industry", "points": 5},
        {"name": "free_mail", "type": "flag", "field": "email_free_mail", "points": -15},
        {"name": "disposable_email", "type": "flag", "field": "email_disposable", "points": -40},
    ],
    "disqualifiers": [
        {"name": "student", "type": "keywords", "field": "job_title", "words": ["student", "intern"],
         "reason": "a student"},
        {"name": "job_seeker", "type": "keywords", "field": "job_title",
         "words": ["job seeker", "looking for work", "unemployed"], "reason": "looking for a job"},
    ],
    "engagement": {
        "points": {"demo_requested": 40, "pricing_page_viewed": 15, "webinar_attended": 10, "content_downloaded": 8,
                   "reengaged": 8, "form_submitted": 5, "email_clicked": 2},
        "half_life_days": 30,
        "cap": 100,
    },
    "grades": {"fit": {"A": 50, "B": 30, "C": 15}, "engagement": {"1": 40, "2": 15, "3": 2}},
    "mql": {"any": [
        {"name": "fit_and_engaged", "fit_at_least": "B", "engagement_at_least": 2},
        {"name": "demo_request", "fit_at_least": "C", "activity": "demo_requested"},
    ]},
}  # fmt: skip
"""The modest built-in ICP in force before marketing and sales sign one (docs/icp.md, "The default ICP")."""


@cache
def default_icp() -> CompiledIcp:
    """The ICP in force before marketing and sales sign one."""
    return compile_icp(IcpDocument.model_validate(DEFAULT_DOCUMENT), version=DEFAULT_VERSION)
