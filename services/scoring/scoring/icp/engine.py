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
from functools import cache, lru_cache, partial
from operator import itemgetter
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel

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
# A pydantic model's four slots, set through their descriptors: the cheapest way to fill one.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _criterion(name: str, points: int, reason: str, kind: CriterionKind) -> ScoreCriterion:
    """A `ScoreCriterion` built without validation: what `model_construct` does, at a tenth of its cost.

    Every value comes from the compiled document or from the engine itself, already of the right
    type; a test keeps the result equal to a validated one.
    """
    criterion = _new(ScoreCriterion)
    _set_dict(criterion, {"criterion": name, "points": points, "reason": reason, "kind": kind})
    _set_fields_set(criterion, _FIELDS_SET)
    _set_extra(criterion, None)
    _set_private(criterion, None)
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
"""Values each field remembers the outcomes of, the first seen (common values come early: countries, sizes, titles).

Once full it remembers no more rather than forget: evicting would rebuild the same outcomes over
and over on fields with many distinct values, where remembering cannot help anyway. Each criterion
also remembers up to this many of its outcomes by reason, so a value seen once still reuses the
outcomes that do not depend on it ("no job_title", "has none listed").
"""

NEVER = 1 << 30
"""The position of the disqualifier that holds, when none does."""


@dataclass(frozen=True)
class _Needs:
    """What the criteria on one field read of its value, so each form is derived once per value."""

    path: str
    tested: bool = False
    folded: bool = False
    items: bool = False
    hosts: bool = False
    region: bool = False
    truthy: bool = False
    number: bool = False
    unlisted: bool = False
    no_group: bool = False
    words: frozenset[str] = frozenset()


class _View:
    """One field's value for one lead, in every form its criteria read (misses of the field's memory only)."""

    __slots__ = (
        "band_text",
        "code",
        "code_in",
        "code_not_in",
        "folded",
        "hosts",
        "in_no",
        "in_yes",
        "is_list",
        "items",
        "missing",
        "no_group",
        "number",
        "present",
        "raw",
        "shown",
        "text",
        "truthy",
        "unlisted",
    )

    def __init__(self, value: Any, needs: _Needs) -> None:
        path = needs.path
        self.raw = value
        self.missing = missing = _missing(value)
        self.is_list = is_list = isinstance(value, list)
        if needs.tested and not missing:
            self.text = text = str(value)
            self.shown = shown = _show(text)
            if needs.folded:
                self.in_yes, self.in_no = f"{path} {shown} in list", f"{path} {shown} not in list"
                if not is_list:
                    self.folded = text.strip().casefold()
            if needs.items or (needs.folded and is_list):
                self.items = _items(value)
            if needs.hosts:
                self.hosts = None if is_list else (_host(value),)  # a list's hosts are read lazily, as listed
            if needs.unlisted:
                self.unlisted = f"{path} {shown} not listed"
            if needs.no_group:
                self.no_group = f"{path} {shown} matches no group"
            if needs.region:
                self.code = code = text.strip().upper()
                code_shown = _show(code)
                self.code_in, self.code_not_in = f"{path} {code_shown} in ", f"{path} {code_shown} not in "
            # A whole-word match needs every token of the word in the text: a cheap test first (exact on ASCII).
            low = text.lower() if needs.words and text.isascii() else None
            self.present = None if low is None else frozenset(word for word in needs.words if word in low)
        if needs.truthy and value is not None:
            self.truthy = _truthy(value)
        if needs.number:
            self.number = number = _number(value)
            if number is not None:
                self.band_text = f"{path} {number:g} in "


Test = Callable[[_View], tuple[bool, str]]
"""Reads a field's value: whether it matches, and a short reason either way."""

Outcome = tuple[tuple[ScoreCriterion, ...], int, int, str | None]
"""One field's criteria for one value: their outcomes, their fit points, the first disqualifier that holds and why."""


class _Field:
    """The criteria reading one field, evaluated together and remembered per value of the field."""

    __slots__ = ("disqualifiers", "fit", "head", "needs", "path", "rest", "seen")

    def __init__(
        self,
        path: str,
        needs: _Needs,
        fit: list[Callable[[_View], ScoreCriterion]],
        disqualifiers: list[tuple[int, Callable[[_View], tuple[ScoreCriterion, str | None]]]],
    ) -> None:
        head, _, rest = path.partition(".")
        nested = bool(rest) and head in ("attributes", "account")
        self.path, self.head, self.rest = path, head if nested else None, rest
        self.needs, self.fit, self.disqualifiers = needs, tuple(fit), tuple(disqualifiers)
        self.seen: dict[tuple[type, Any], Outcome] = {}

    def outcome(self, value: Any) -> Outcome:
        """Every criterion on this field for `value` (not remembered: `CompiledIcp` does that)."""
        view = _View(value, self.needs)
        criteria = [run(view) for run in self.fit]
        points = sum(criterion.points for criterion in criteria)
        first, said = NEVER, None
        for position, run_disqualifier in self.disqualifiers:
            criterion, says = run_disqualifier(view)
            criteria.append(criterion)
            if says is not None and first == NEVER:
                first, said = position, says
        return tuple(criteria), points, first, said


def _identity(flat: list[ScoreCriterion]) -> list[ScoreCriterion]:
    return flat


@dataclass(frozen=True)
class CompiledIcp:
    """An ICP version ready to evaluate leads quickly."""

    version: str
    document: IcpDocument
    _fields: tuple[_Field, ...] = field(repr=False, default=())
    _order: Callable[[list[ScoreCriterion]], Sequence[ScoreCriterion]] = field(repr=False, default=_identity)
    _engagement_points: Mapping[str, int] = field(repr=False, default_factory=dict)
    _half_life_seconds: float | None = field(repr=False, default=None)
    _cap: int | None = field(repr=False, default=None)
    _fit_bands: tuple[tuple[str, float], ...] = field(repr=False, default=())
    _engagement_bands: tuple[tuple[int, float], ...] = field(repr=False, default=())
    _alternatives: tuple[_Alternative, ...] = field(repr=False, default=())

    def _read(self, facts: Facts) -> tuple[list[ScoreCriterion], int, str | None]:
        """Every fit criterion and disqualifier field by field (each value read once), the fit, the disqualification."""
        flat: list[ScoreCriterion] = []
        fit = 0
        first, disqualified = NEVER, None
        for item in self._fields:
            if item.head is None:
                value = facts.get(item.path)
            else:
                inner = facts.get(item.head)
                value = inner.get(item.rest) if isinstance(inner, dict) else None
            seen = item.seen
            key = (value.__class__, value)
            try:
                known = seen.get(key)
            except TypeError:  # a list or dict value: not remembered
                known = item.outcome(value)
            else:
                if known is None:
                    known = item.outcome(value)
                    if len(seen) < CACHE_SIZE:
                        seen[key] = known
            flat += known[0]
            fit += known[1]
            if known[2] < first:
                first, disqualified = known[2], known[3]
        return flat, fit, disqualified

    def evaluate(self, facts: Facts, engagements: Sequence[Engagement], *, now: datetime) -> Evaluation:
        """Grade one lead as of `now`: every criterion's points and why, the A1-D4 cell and the MQL decision.

        The `ScoreCriterion` objects are shared between evaluations with the same outcome: read them,
        never change them.
        """
        flat, fit, disqualified = self._read(facts)
        criteria = list(self._order(flat))
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
        fit, disqualified = self._score(facts)
        engagement, newest = self._engagement_total(engagements, now)
        engagement_grade = 4
        for grade, least in self._engagement_bands:
            if engagement >= least:
                engagement_grade = grade
                break
        if disqualified:
            return f"D{engagement_grade}", False
        rank = 3
        for rank, (_, least) in enumerate(self._fit_bands):  # noqa: B007  (the rank is the answer)
            if fit >= least:
                break
        for alternative in self._alternatives:
            if alternative.holds(rank, engagement_grade, newest):
                return f"{FIT_GRADES[rank]}{engagement_grade}", True
        return f"{FIT_GRADES[rank]}{engagement_grade}", False

    def _score(self, facts: Facts) -> tuple[int, bool]:
        """`_read`'s fit and whether a disqualifier holds, without gathering the criteria.

        `_read`'s loop repeated rather than shared: a call per field and lead would cost what it saves.
        """
        fit = 0
        disqualified = False
        for item in self._fields:
            if item.head is None:
                value = facts.get(item.path)
            else:
                inner = facts.get(item.head)
                value = inner.get(item.rest) if isinstance(inner, dict) else None
            seen = item.seen
            key = (value.__class__, value)
            try:
                known = seen.get(key)
            except TypeError:  # a list or dict value: not remembered
                known = item.outcome(value)
            else:
                if known is None:
                    known = item.outcome(value)
                    if len(seen) < CACHE_SIZE:
                        seen[key] = known
            fit += known[1]
            if known[3] is not None:
                disqualified = True
        return fit, disqualified

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
    """Prepare a document for evaluation (regexes, keyword tables and bands built once, criteria grouped by field)."""
    paths: dict[str, tuple[list[Any], list[tuple[int, Any]]]] = {}
    for criterion in document.fit:
        paths.setdefault(criterion.field, ([], []))[0].append(criterion)
    for position, item in enumerate(document.disqualifiers):
        paths.setdefault(item.field, ([], []))[1].append((position, item))
    fields = tuple(_compile_field(path, fit, disqualifiers) for path, (fit, disqualifiers) in paths.items())
    # The fields give their outcomes field by field; the explanation lists them in the document's order.
    where = {
        id(criterion): at
        for at, criterion in enumerate(c for fit, items in paths.values() for c in [*fit, *(item for _, item in items)])
    }
    positions = [where[id(criterion)] for criterion in [*document.fit, *document.disqualifiers]]
    order: Callable[[list[ScoreCriterion]], Sequence[ScoreCriterion]] = _identity
    if positions != sorted(positions):
        order = itemgetter(*positions)  # several positions: it gives a tuple
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
        _fields=fields,
        _order=order,
        _engagement_points=dict(rules.points),
        _half_life_seconds=None if rules.half_life_days is None else rules.half_life_days * SECONDS_PER_DAY,
        _cap=rules.cap,
        _fit_bands=tuple(fit_needed.items()),
        _engagement_bands=tuple(engagement_needed.items()),
        _alternatives=alternatives,
    )


_UNTESTED = (FlagCriterion, FlagDisqualifier, ExistsCriterion, ExistsDisqualifier, BandsCriterion)
"""Criteria that read no text of their value."""


def _compile_field(path: str, fit: list[Any], disqualifiers: list[tuple[int, Any]]) -> _Field:
    specs = [*fit, *(item for _, item in disqualifiers)]
    kinds: set[type[Any]] = {type(spec) for spec in specs}
    words: set[str] = set()
    for spec in specs:
        if isinstance(spec, KeywordsCriterion):
            words.update(token for group in spec.groups for token in _tokens(group.words))
        elif isinstance(spec, KeywordsDisqualifier):
            words.update(_tokens(spec.words))
    needs = _Needs(
        path=path,
        tested=bool(
            kinds.difference((FlagCriterion, FlagDisqualifier, ExistsCriterion, ExistsDisqualifier, BandsCriterion))
        ),
        folded=bool(kinds.intersection((InCriterion, InDisqualifier))),
        items=bool(kinds.intersection((ContainsAnyCriterion, ContainsAnyDisqualifier))),
        hosts=bool(kinds.intersection((DomainCriterion, DomainDisqualifier))),
        region=bool(kinds.intersection((RegionCriterion, RegionDisqualifier))),
        truthy=bool(kinds.intersection((FlagCriterion, FlagDisqualifier))),
        number=BandsCriterion in kinds,
        unlisted=bool(kinds.intersection((DomainCriterion, DomainDisqualifier))),
        no_group=KeywordsCriterion in kinds,
        words=frozenset(words),
    )
    return _Field(
        path,
        needs,
        [_compile_fit(criterion) for criterion in fit],
        [(position, _compile_disqualifier(item)) for position, item in disqualifiers],
    )


def _tokens(words: Sequence[str]) -> list[str]:
    """The lower-case tokens of ASCII words (the cheap test before a regex; other words always take the regex)."""
    return [token.lower() for word in words if word.isascii() for token in word.split()]


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
    """The test a criterion or disqualifier applies to its field's value (seen through `_View`)."""
    absent = f"no {path}"
    if isinstance(spec, InCriterion | InDisqualifier):
        wanted = frozenset(value.strip().casefold() for value in spec.values)

        def is_in(view: _View) -> tuple[bool, str]:
            if view.missing:
                return False, absent
            hit = not wanted.isdisjoint(view.items) if view.is_list else view.folded in wanted
            return hit, view.in_yes if hit else view.in_no

        return is_in
    if isinstance(spec, DomainCriterion | DomainDisqualifier):
        domains = frozenset(_host(domain) for domain in spec.domains)
        below = tuple(f".{domain}" for domain in domains)

        def in_domain(view: _View) -> tuple[bool, str]:
            if view.missing:
                return False, absent
            for host in view.hosts if view.hosts is not None else map(_host, view.raw):
                if host in domains or host.endswith(below):
                    listed = host if host in domains else next(d for d in domains if host.endswith(f".{d}"))
                    return True, f"{path} {host} under {listed}"
            return False, view.unlisted

        return in_domain
    if isinstance(spec, RegionCriterion | RegionDisqualifier):
        codes = countries_of(spec.regions, spec.countries)
        label = "+".join(
            [*(region.upper() for region in spec.regions), *(["listed countries"] if spec.countries else [])]
        )

        def in_region(view: _View) -> tuple[bool, str]:
            if view.missing:
                return False, absent
            hit = view.code in codes
            return hit, (view.code_in if hit else view.code_not_in) + label

        return in_region
    if isinstance(spec, ContainsAnyCriterion | ContainsAnyDisqualifier):
        reasons = {value.strip().casefold(): f"{path} has {_show(value.strip().casefold())}" for value in spec.values}
        none_listed = f"{path} has none listed"

        def contains_any(view: _View) -> tuple[bool, str]:
            if view.missing:
                return False, absent
            for item in view.items:
                reason = reasons.get(item)
                if reason is not None:
                    return True, reason
            return False, none_listed

        return contains_any
    if isinstance(spec, FlagCriterion | FlagDisqualifier):
        equals = spec.equals
        yes, no = f"{path} is {str(equals).lower()}", f"{path} is {str(not equals).lower()}"

        def flag(view: _View) -> tuple[bool, str]:
            if view.raw is None:
                return False, absent
            hit = view.truthy is equals
            return hit, yes if hit else no

        return flag
    if isinstance(spec, ExistsCriterion | ExistsDisqualifier):
        given = f"{path} given"
        return lambda view: (False, absent) if view.missing else (True, given)
    if isinstance(spec, KeywordsDisqualifier):
        pattern, screen = _words_pattern(tuple(spec.words)), _Screen.of(spec.words)
        clear = f"{path} clear"

        def has_words(view: _View) -> tuple[bool, str]:
            if view.missing:
                return False, absent
            if screen.rules_out(view.present):
                return False, clear
            found = pattern.search(view.text)
            return (True, f"{path} says {_show(found.group(0).lower())}") if found else (False, clear)

        return has_words
    raise TypeError(f"no test for {type(spec).__name__}")  # pragma: no cover - the document's union is closed


@dataclass(frozen=True)
class _Screen:
    """A cheap test that rules out a regex search: some token of each word is absent from the (ASCII) text."""

    singles: frozenset[str]
    phrases: tuple[frozenset[str], ...]
    usable: bool

    @classmethod
    def of(cls, words: Sequence[str]) -> "_Screen":
        """The screen of these words (unusable when a word is not ASCII: case-insensitive matching is subtler there)."""
        tokens = [word.lower().split() for word in words]
        return cls(
            singles=frozenset(parts[0] for parts in tokens if len(parts) == 1),
            phrases=tuple(frozenset(parts) for parts in tokens if len(parts) > 1),
            usable=all(word.isascii() for word in words),
        )

    def rules_out(self, present: frozenset[str] | None) -> bool:
        """Whether no word can match, given the tokens `present` in the text (None: the text is not ASCII)."""
        if present is None or not self.usable:
            return False
        return self.singles.isdisjoint(present) and not any(phrase <= present for phrase in self.phrases)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y")
    return bool(value)


@cache
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of the words or phrases as whole words, case-insensitive (`vp` matches "VP Sales", not "MVP")."""
    alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


T = TypeVar("T")


def _remembering(build: Callable[[str], T]) -> Callable[[str], T]:
    """`build(reason)`, remembered for the first `CACHE_SIZE` reasons."""
    seen: dict[str, T] = {}

    def known(reason: str) -> T:
        found = seen.get(reason)
        if found is None:
            found = build(reason)
            if len(seen) < CACHE_SIZE:
                seen[reason] = found
        return found

    return known


def _compile_fit(criterion: Any) -> Callable[[_View], ScoreCriterion]:
    name, path = criterion.name, criterion.field
    absent = _criterion(name, 0, f"no {path}", CriterionKind.FIT)
    if isinstance(criterion, BandsCriterion):
        bands = tuple(
            (band.min, band.max, _remembering(partial(_scored, name, band.points)), f"band {_span(band.min, band.max)}")
            for band in criterion.bands
        )
        outside = _remembering(partial(_scored, name, 0))

        def banded(view: _View) -> ScoreCriterion:
            value = view.number
            if value is None:
                return absent
            for low, high, scored, phrase in bands:
                if (low is None or value >= low) and (high is None or value <= high):
                    return scored(view.band_text + phrase)
            return outside(view.band_text + "no band")

        return banded
    if isinstance(criterion, KeywordsCriterion):
        groups = tuple(
            (
                _Screen.of(group.words),
                _words_pattern(tuple(group.words)),
                _remembering(partial(_labelled, name, group.points, f"{path} {group.label}")),
            )
            for group in criterion.groups
        )
        unmatched = _remembering(partial(_scored, name, 0))

        def keywords(view: _View) -> ScoreCriterion:
            if view.missing:
                return absent
            for screen, pattern, scored in groups:
                if screen.rules_out(view.present):
                    continue
                found = pattern.search(view.text)
                if found:
                    return scored(found.group(0).lower())
            return unmatched(view.no_group)

        return keywords
    test, points = _compile_test(criterion, path), criterion.points
    hits, misses = _remembering(partial(_scored, name, points)), _remembering(partial(_scored, name, 0))

    def tested(view: _View) -> ScoreCriterion:
        hit, reason = test(view)
        return hits(reason) if hit else misses(reason)

    return tested


def _scored(name: str, points: int, reason: str) -> ScoreCriterion:
    return _criterion(name, points, reason, CriterionKind.FIT)


def _labelled(name: str, points: int, label: str, matched: str) -> ScoreCriterion:
    return _criterion(name, points, f"{label} ({matched!r})", CriterionKind.FIT)


def _compile_disqualifier(item: Any) -> Callable[[_View], tuple[ScoreCriterion, str | None]]:
    test, name, why = _compile_test(item, item.field), item.name, item.reason

    def holds(reason: str) -> tuple[ScoreCriterion, str | None]:
        return _criterion(name, 0, reason, CriterionKind.DISQUALIFIER), f"{name}: {why or reason}"

    def fails(reason: str) -> tuple[ScoreCriterion, str | None]:
        return _criterion(name, 0, f"not met ({reason})", CriterionKind.DISQUALIFIER), None

    said, unsaid = _remembering(holds), _remembering(fails)

    def disqualifies(view: _View) -> tuple[ScoreCriterion, str | None]:
        hit, reason = test(view)
        return said(reason) if hit else unsaid(reason)

    return disqualifies


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
