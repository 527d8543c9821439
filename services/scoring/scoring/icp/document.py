"""The ICP document (agreement kind `icp`): fit criteria, disqualifiers, engagement, grades and the MQL rule.

Pydantic checks the structure (unknown keys refused); `check` refuses everything else an engine
could not evaluate, each problem at the JSON pointer of the field at fault. docs/icp.md is the
reader's guide to this format.
"""

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, model_validator

from leadrelay.agreements import AgreementKind, DocumentError, all_of, unique_names
from leadrelay.apikeys import Scope, Team
from leadrelay.lead_fields import LEAD_FIELDS, FieldType
from leadrelay.stages import ENGAGEMENT_ACTIVITIES
from leadrelay.validation import Location, relocating_errors
from scoring.icp.regions import COUNTRIES, REGIONS

Name = Annotated[str, Field(min_length=1, max_length=100)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
FieldPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="A lead field (`industry`), an attribute (`attributes.technologies`) or a field of the "
        "matched account (`account.employees`).",
        examples=["industry", "account.employees", "attributes.technologies"],
    ),
]
Points = Annotated[int, Field(ge=-1000, le=1000)]
Values = Annotated[list[Text], Field(min_length=1, max_length=1000)]


ACCOUNT_FIELDS: dict[str, FieldType] = {
    "name": FieldType.TEXT,
    "domains": FieldType.LIST,
    "industry": FieldType.TEXT,
    "employees": FieldType.NUMBER,
    "annual_revenue": FieldType.NUMBER,
    "country": FieldType.COUNTRY,
    "owner_rep_id": FieldType.TEXT,
}
"""Fields of the matched account, read as `account.<field>`."""

_ATTRIBUTE = re.compile(r"^attributes\.[A-Za-z0-9_\-]{1,64}$")


def field_type(path: str) -> FieldType | None:
    """The type of a field path, or None when no lead has such a field."""
    if path in LEAD_FIELDS:
        return LEAD_FIELDS[path]
    if path.startswith("account."):
        return ACCOUNT_FIELDS.get(path.removeprefix("account."))
    if _ATTRIBUTE.match(path):
        return FieldType.ANY
    return None


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    field: FieldPath


# What each kind of test reads from a value; fit criteria add points, disqualifiers a reason.


class _InTest(BaseModel):
    type: Literal["in"]
    values: Values = Field(description="Case-insensitive; a list value matches when any item is listed.")


class _DomainTest(BaseModel):
    type: Literal["domain"]
    domains: Values = Field(description="Matches the domain and its subdomains; URLs are reduced to their host.")


class _RegionTest(BaseModel):
    type: Literal["region"]
    field: FieldPath = "country"
    regions: list[Text] = Field(default_factory=list, max_length=20, examples=[["EMEA", "NA"]])
    countries: list[Text] = Field(default_factory=list, max_length=300, examples=[["AU"]])


class _ContainsAnyTest(BaseModel):
    type: Literal["contains_any"]
    values: Values = Field(description="Matches when the value (a list or a comma-separated text) holds any of these.")


class _FlagTest(BaseModel):
    type: Literal["flag"]
    equals: bool = True


class _ExistsTest(BaseModel):
    type: Literal["exists"]


class InCriterion(_InTest, _Item):
    """Points when the field's value is one of `values` (industry, source, ...)."""

    points: Points


class DomainCriterion(_DomainTest, _Item):
    """Points when the field's domain is one of `domains` or below one."""

    points: Points


class RegionCriterion(_RegionTest, _Item):
    """Points when the country (ISO alpha-2) is in one of `regions` or in `countries`."""

    points: Points


class ContainsAnyCriterion(_ContainsAnyTest, _Item):
    """Points when the field holds any of `values` (technologies from attributes, ...)."""

    points: Points


class FlagCriterion(_FlagTest, _Item):
    """Points (usually a penalty) when a yes/no field equals `equals` (free mail, disposable email, ...)."""

    points: Points


class ExistsCriterion(_ExistsTest, _Item):
    """Points when the field has a value."""

    points: Points


class Band(BaseModel):
    """A numeric band, bounds included; leave `min` or `max` out for an open end."""

    model_config = ConfigDict(extra="forbid")

    min: int | None = None
    max: int | None = None
    points: Points


class BandsCriterion(_Item):
    """Points of the band the number falls in (employees, revenue); bands may not overlap."""

    type: Literal["bands"]
    bands: list[Band] = Field(min_length=1, max_length=50)


class KeywordGroup(BaseModel):
    """A label (a seniority, a department) and the words that mean it."""

    model_config = ConfigDict(extra="forbid")

    label: Name
    words: Values = Field(description="Whole words or phrases, case-insensitive.")
    points: Points


class KeywordsCriterion(_Item):
    """The points of the first group (in order) with a word in the field: job title to seniority or department."""

    type: Literal["keywords"]
    field: FieldPath = "job_title"
    groups: list[KeywordGroup] = Field(min_length=1, max_length=50)


FitCriterion = Annotated[
    InCriterion
    | DomainCriterion
    | RegionCriterion
    | ContainsAnyCriterion
    | FlagCriterion
    | ExistsCriterion
    | BandsCriterion
    | KeywordsCriterion,
    Field(discriminator="type"),
]


class _Disqualifier(_Item):
    reason: Text | None = Field(default=None, description="Said in `disqualified`; the test's own words otherwise.")


class InDisqualifier(_InTest, _Disqualifier):
    """Disqualifies when the field's value is one of `values`."""


class DomainDisqualifier(_DomainTest, _Disqualifier):
    """Disqualifies a domain or its subdomains (competitors)."""


class RegionDisqualifier(_RegionTest, _Disqualifier):
    """Disqualifies countries (markets the company does not serve)."""


class ContainsAnyDisqualifier(_ContainsAnyTest, _Disqualifier):
    """Disqualifies when the field holds any of `values`."""


class FlagDisqualifier(_FlagTest, _Disqualifier):
    """Disqualifies when a yes/no field equals `equals`."""


class ExistsDisqualifier(_ExistsTest, _Disqualifier):
    """Disqualifies when the field has a value."""


class KeywordsDisqualifier(_Disqualifier):
    """Disqualifies when the field holds any of `words` (students, job seekers)."""

    type: Literal["keywords"]
    field: FieldPath = "job_title"
    words: Values


Disqualifier = Annotated[
    InDisqualifier
    | DomainDisqualifier
    | RegionDisqualifier
    | ContainsAnyDisqualifier
    | FlagDisqualifier
    | ExistsDisqualifier
    | KeywordsDisqualifier,
    Field(discriminator="type"),
]


class EngagementRules(BaseModel):
    """Points per engagement, halved every `half_life_days` of age, the total optionally capped."""

    model_config = ConfigDict(extra="forbid")

    points: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(
        max_length=20, examples=[{"demo_requested": 40, "email_clicked": 3}]
    )
    half_life_days: float | None = Field(
        default=30, gt=0, le=3650, description="Leave null for no decay: an engagement counts in full forever."
    )
    cap: int | None = Field(default=None, ge=0, le=10_000)


class FitGrades(BaseModel):
    """The minimum fit points of grades A, B and C (below C is D)."""

    model_config = ConfigDict(extra="forbid")

    A: int = Field(ge=-10_000, le=10_000)
    B: int = Field(ge=-10_000, le=10_000)
    C: int = Field(ge=-10_000, le=10_000)


class EngagementGrades(BaseModel):
    """The minimum engagement points of grades 1, 2 and 3 (1 is the most engaged; below 3 is 4)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    one: int = Field(alias="1", ge=0, le=10_000)
    two: int = Field(alias="2", ge=0, le=10_000)
    three: int = Field(alias="3", ge=0, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        # YAML reads `1: 40` with an integer key.
        return {str(key): value for key, value in data.items()} if isinstance(data, dict) else data


class Grades(BaseModel):
    """Fit bands A-D and engagement bands 1-4: the A1-D4 matrix."""

    model_config = ConfigDict(extra="forbid")

    fit: FitGrades
    engagement: EngagementGrades


class MqlAlternative(BaseModel):
    """One way to be an MQL: every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    fit_at_least: str = Field(default="D", max_length=1, description="A, B, C or D.", examples=["B"])
    engagement_at_least: int = Field(default=4, description="1 (most engaged) to 4.", examples=[2])
    activity: str | None = Field(default=None, max_length=30, description="An engagement the person did.")
    within_days: int | None = Field(
        default=None, ge=1, le=3650, description="Only counts `activity` this recent; ever, when left out."
    )


class MqlRule(BaseModel):
    """A lead is an MQL when any alternative holds (the first that holds is named)."""

    model_config = ConfigDict(extra="forbid")

    any: list[MqlAlternative] = Field(min_length=1, max_length=20)


class IcpDocument(BaseModel):
    """An Ideal Customer Profile: what makes a good lead, what rules one out, and when it is an MQL."""

    model_config = ConfigDict(extra="forbid")

    fit: list[FitCriterion] = Field(default_factory=list, max_length=1000)
    disqualifiers: list[Disqualifier] = Field(default_factory=list, max_length=200)
    engagement: EngagementRules
    grades: Grades
    mql: MqlRule

    @model_validator(mode="wrap")
    @classmethod
    def _pointers_without_union_tags(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return relocating_errors(handler, data, _without_tag)


def _without_tag(location: Location) -> Location:
    # A criterion's `type` (`fit/0/in/points`) is no level of the document.
    if len(location) > 3 and location[0] in ("fit", "disqualifiers") and location[2] in _TAGS:
        return (*location[:2], *location[3:])
    return location


_TAGS = frozenset({"in", "domain", "region", "contains_any", "flag", "exists", "bands", "keywords"})

FIT_GRADES = ("A", "B", "C", "D")
ENGAGEMENT_GRADES = (1, 2, 3, 4)
ENGAGEMENT_NAMES = frozenset(activity.value for activity in ENGAGEMENT_ACTIVITIES)

_ACCEPTS: dict[str, frozenset[FieldType]] = {
    "in": frozenset({FieldType.TEXT, FieldType.COUNTRY, FieldType.LIST}),
    "domain": frozenset({FieldType.TEXT, FieldType.LIST}),
    "region": frozenset({FieldType.COUNTRY}),
    "contains_any": frozenset({FieldType.TEXT, FieldType.LIST}),
    "flag": frozenset({FieldType.FLAG}),
    "exists": frozenset(FieldType),
    "bands": frozenset({FieldType.NUMBER}),
    "keywords": frozenset({FieldType.TEXT}),
}
"""Which field types each test reads (an attribute, of unknown type, goes with any)."""


def fit_thresholds(grades: Grades) -> dict[str, float]:
    """Minimum fit points per fit grade (D: anything)."""
    return {"A": grades.fit.A, "B": grades.fit.B, "C": grades.fit.C, "D": float("-inf")}


def engagement_thresholds(grades: Grades) -> dict[int, float]:
    """Minimum engagement points per engagement grade (4: anything)."""
    return {1: grades.engagement.one, 2: grades.engagement.two, 3: grades.engagement.three, 4: float("-inf")}


def max_fit(document: IcpDocument) -> int:
    """The most fit points any lead can get."""
    total = 0
    for criterion in document.fit:
        if isinstance(criterion, BandsCriterion):
            total += max(0, *(band.points for band in criterion.bands))
        elif isinstance(criterion, KeywordsCriterion):
            total += max(0, *(group.points for group in criterion.groups))
        else:
            total += max(0, criterion.points)
    return total


def max_engagement(document: IcpDocument) -> float:
    """The most engagement points any lead can get (unbounded without a cap: engagements add up)."""
    if not any(points > 0 for points in document.engagement.points.values()):
        return 0
    return document.engagement.cap if document.engagement.cap is not None else float("inf")


def check(document: IcpDocument) -> list[DocumentError]:
    """Every reason the document could not be evaluated, each at its JSON pointer."""
    errors = unique_names([criterion.name for criterion in document.fit], at="/fit")
    errors += unique_names([item.name for item in document.disqualifiers], at="/disqualifiers")
    errors += unique_names([alternative.name for alternative in document.mql.any], at="/mql/any")
    fit_names = {criterion.name for criterion in document.fit}
    for index, criterion in enumerate(document.fit):
        at = f"/fit/{index}"
        if criterion.name in ENGAGEMENT_NAMES or criterion.name == "engagement_cap":
            errors.append((f"{at}/name", f"{criterion.name!r} names an engagement criterion; choose another name"))
        errors += _check_test(criterion, at=at)
    for index, item in enumerate(document.disqualifiers):
        at = f"/disqualifiers/{index}"
        if item.name in fit_names:
            errors.append((f"{at}/name", f"{item.name!r} also names a fit criterion"))
        errors += _check_test(item, at=at)
    errors += _check_engagement(document.engagement)
    errors += _check_grades(document.grades)
    errors += _check_mql(document)
    return errors


def _check_test(item: BaseModel, *, at: str) -> list[DocumentError]:
    errors: list[DocumentError] = []
    path: str = getattr(item, "field")  # noqa: B009 - every criterion and disqualifier has one
    kind: str = getattr(item, "type")  # noqa: B009
    found = field_type(path)
    if found is None:
        errors.append((f"{at}/field", f"unknown field {path!r}: {_known_fields()}"))
    elif found is not FieldType.ANY and found not in _ACCEPTS[kind]:
        errors.append((f"{at}/field", f"{path!r} holds a {found.value}; a {kind!r} test reads a {_accepted(kind)}"))
    if isinstance(item, BandsCriterion):
        errors += _check_bands(item.bands, at=f"{at}/bands")
    if isinstance(item, (RegionCriterion, RegionDisqualifier)):
        errors += _check_region(item.regions, item.countries, at=at)
    if isinstance(item, KeywordsCriterion):
        for number, group in enumerate(item.groups):
            errors += _check_words(group.words, at=f"{at}/groups/{number}/words")
    if isinstance(item, KeywordsDisqualifier):
        errors += _check_words(item.words, at=f"{at}/words")
    return errors


def _known_fields() -> str:
    return f"use one of {', '.join(LEAD_FIELDS)}, attributes.<name>, or account.<field> ({', '.join(ACCOUNT_FIELDS)})"


def _accepted(kind: str) -> str:
    return " or ".join(sorted(field.value for field in _ACCEPTS[kind]))


def _check_bands(bands: list[Band], *, at: str) -> list[DocumentError]:
    errors: list[DocumentError] = []
    spans: list[tuple[float, float, int]] = []
    for index, band in enumerate(bands):
        if band.min is None and band.max is None:
            errors.append((f"{at}/{index}", "give min, max or both"))
            continue
        low = float("-inf") if band.min is None else band.min
        high = float("inf") if band.max is None else band.max
        if low > high:
            errors.append((f"{at}/{index}/max", f"max {band.max} is below min {band.min}"))
            continue
        for other_low, other_high, other in spans:
            if low <= other_high and other_low <= high:
                errors.append((f"{at}/{index}", f"overlaps band {other} ({at}/{other})"))
                break
        spans.append((low, high, index))
    return errors


def _check_region(regions: Iterable[str], countries: Iterable[str], *, at: str) -> list[DocumentError]:
    errors: list[DocumentError] = []
    regions, countries = list(regions), list(countries)
    if not regions and not countries:
        errors.append((f"{at}/regions", "give regions, countries or both"))
    for index, region in enumerate(regions):
        if region.upper() not in REGIONS:
            errors.append((f"{at}/regions/{index}", f"unknown region {region!r}: use one of {', '.join(REGIONS)}"))
    for index, country in enumerate(countries):
        if country.upper() not in COUNTRIES:
            errors.append((f"{at}/countries/{index}", f"{country!r} is not an ISO 3166-1 alpha-2 country code"))
    return errors


def _check_words(words: list[str], *, at: str) -> list[DocumentError]:
    return [
        (f"{at}/{index}", "a keyword needs a letter or a digit")
        for index, word in enumerate(words)
        if not any(character.isalnum() for character in word)
    ]


def _check_engagement(rules: EngagementRules) -> list[DocumentError]:
    return [
        (
            f"/engagement/points/{_escape(activity)}",
            f"not an engagement: use one of {', '.join(sorted(ENGAGEMENT_NAMES))}",
        )
        for activity in rules.points
        if activity not in ENGAGEMENT_NAMES
    ]


def _check_grades(grades: Grades) -> list[DocumentError]:
    errors: list[DocumentError] = []
    fit = grades.fit
    if fit.B >= fit.A:
        errors.append(("/grades/fit/B", f"must be below A ({fit.A})"))
    if fit.C >= fit.B:
        errors.append(("/grades/fit/C", f"must be below B ({fit.B})"))
    engagement = grades.engagement
    if engagement.two >= engagement.one:
        errors.append(("/grades/engagement/2", f"must be below 1 ({engagement.one})"))
    if engagement.three >= engagement.two:
        errors.append(("/grades/engagement/3", f"must be below 2 ({engagement.two})"))
    return errors


def _check_mql(document: IcpDocument) -> list[DocumentError]:
    errors: list[DocumentError] = []
    fit_needed, engagement_needed = fit_thresholds(document.grades), engagement_thresholds(document.grades)
    best_fit, best_engagement = max_fit(document), max_engagement(document)
    for index, alternative in enumerate(document.mql.any):
        at = f"/mql/any/{index}"
        before = len(errors)
        if alternative.fit_at_least not in FIT_GRADES:
            errors.append((f"{at}/fit_at_least", f"unknown fit grade {alternative.fit_at_least!r}: use A, B, C or D"))
        if alternative.engagement_at_least not in ENGAGEMENT_GRADES:
            errors.append((f"{at}/engagement_at_least", "unknown engagement grade: use 1, 2, 3 or 4"))
        if alternative.activity is not None and alternative.activity not in ENGAGEMENT_NAMES:
            errors.append((f"{at}/activity", f"not an engagement: use one of {', '.join(sorted(ENGAGEMENT_NAMES))}"))
        if alternative.within_days is not None and alternative.activity is None:
            errors.append((f"{at}/within_days", "only with an activity"))
        if len(errors) > before:
            continue
        needed = fit_needed[alternative.fit_at_least]
        if needed > best_fit:
            errors.append(
                (
                    f"{at}/fit_at_least",
                    f"no lead can meet it: fit {alternative.fit_at_least} needs {needed:g} points, "
                    f"the fit criteria give at most {best_fit}",
                )
            )
        needed = engagement_needed[alternative.engagement_at_least]
        if needed > best_engagement:
            errors.append(
                (
                    f"{at}/engagement_at_least",
                    f"no lead can meet it: engagement {alternative.engagement_at_least} needs {needed:g} points, "
                    f"the engagement criteria give at most {best_engagement:g}",
                )
            )
    return errors


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


EXAMPLE: dict[str, Any] = {
    "fit": [
        {"name": "target_industry", "type": "in", "field": "industry",
         "values": ["software", "financial services"], "points": 20},
        {"name": "company_size", "type": "bands", "field": "employees", "bands": [
            {"min": 50, "max": 199, "points": 10},
            {"min": 200, "max": 999, "points": 20},
            {"min": 1000, "max": 4999, "points": 15},
            {"min": 5000, "points": 10},
        ]},
        {"name": "annual_revenue", "type": "bands", "field": "account.annual_revenue", "bands": [
            {"min": 10_000_000, "max": 999_999_999, "points": 10},
            {"min": 1_000_000_000, "points": 5},
        ]},
        {"name": "target_region", "type": "region", "field": "country", "regions": ["UKI", "DACH", "NA"],
         "points": 15},
        {"name": "seniority", "type": "keywords", "field": "job_title", "groups": [
            {"label": "executive", "words": ["ceo", "cto", "cfo", "cmo", "coo", "chief", "founder", "president"],
             "points": 25},
            {"label": "vp", "words": ["vp", "vice president"], "points": 20},
            {"label": "director", "words": ["director", "head"], "points": 15},
            {"label": "manager", "words": ["manager", "lead"], "points": 8},
            {"label": "individual", "words": ["developer", "engineer", "analyst", "specialist"], "points": 0},
        ]},
        {"name": "department", "type": "keywords", "field": "job_title", "groups": [
            {"label": "engineering", "words": ["cto", "engineering", "engineer", "developer"], "points": 10},
            {"label": "sales", "words": ["sales", "revenue"], "points": 10},
            {"label": "marketing", "words": ["marketing", "cmo"], "points": 5},
        ]},
        {"name": "technologies", "type": "contains_any", "field": "attributes.technologies",
         "values": ["salesforce", "hubspot", "snowflake"], "points": 10},
        {"name": "warm_source", "type": "in", "field": "source", "values": ["referral", "trade-show"],
         "points": 10},
        {"name": "company_given", "type": "exists", "field": "company", "points": 5},
        {"name": "free_mail", "type": "flag", "field": "email_free_mail", "points": -20},
        {"name": "disposable_email", "type": "flag", "field": "email_disposable", "points": -40},
    ],
    "disqualifiers": [
        {"name": "competitor", "type": "domain", "field": "email_domain",
         "domains": ["rival.example", "competitor.example"], "reason": "works for a competitor"},
        {"name": "student", "type": "keywords", "field": "job_title", "words": ["student", "intern", "trainee"],
         "reason": "a student"},
        {"name": "job_seeker", "type": "keywords", "field": "job_title",
         "words": ["job seeker", "looking for work", "seeking opportunities", "unemployed"],
         "reason": "looking for a job"},
    ],
    "engagement": {
        "points": {
            "demo_requested": 40,
            "pricing_page_viewed": 15,
            "webinar_attended": 15,
            "content_downloaded": 10,
            "reengaged": 10,
            "form_submitted": 5,
            "email_clicked": 3,
        },
        "half_life_days": 14,
        "cap": 100,
    },
    "grades": {"fit": {"A": 65, "B": 45, "C": 25}, "engagement": {"1": 40, "2": 15, "3": 3}},
    "mql": {"any": [
        {"name": "ideal_fit", "fit_at_least": "A"},
        {"name": "fit_and_engaged", "fit_at_least": "B", "engagement_at_least": 2},
        {"name": "demo_request", "fit_at_least": "C", "activity": "demo_requested", "within_days": 30},
    ]},
}  # fmt: skip
"""The complete documented example (docs/icp.md), also the demo ICP `make run` signs (deploy/demo/icp.yaml)."""

ICP = AgreementKind(
    name="icp",
    title="Ideal Customer Profile",
    document=IcpDocument,
    check=check,
    approval=all_of(Team.MARKETING, Team.SALES),
    source="leadrelay/scoring",
    example=EXAMPLE,
    read_scopes=(),
    write_scopes=(Scope.ICP_WRITE,),
    approve_scopes=(Scope.ICP_APPROVE,),
)
