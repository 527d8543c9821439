"""The ICP engine, table by table: every criterion type, decay, bands, grades, the MQL rule and disqualifiers."""

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadrelay.events import CriterionKind, ScoreCriterion
from leadrelay.stages import ActivityType
from scoring.icp.document import EXAMPLE, IcpDocument, check
from scoring.icp.engine import (
    DEFAULT_DOCUMENT,
    DEFAULT_VERSION,
    CompiledIcp,
    Engagement,
    compile_icp,
    default_icp,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GRADES = {"fit": {"A": 30, "B": 20, "C": 10}, "engagement": {"1": 40, "2": 20, "3": 5}}


def icp(*fit: dict[str, Any], **overrides: Any) -> CompiledIcp:
    """A document of these fit criteria and plain engagement, grades and MQL rule, compiled."""
    document: dict[str, Any] = {
        "fit": list(fit),
        "engagement": {"points": {"demo_requested": 40, "email_clicked": 4}, "half_life_days": None},
        "grades": GRADES,
        "mql": {"any": [{"name": "any_lead"}]},
        **overrides,
    }
    parsed = IcpDocument.model_validate(document)
    assert check(parsed) == []
    return compile_icp(parsed, version="t")


def points_of(compiled: CompiledIcp, facts: dict[str, Any], name: str = "c") -> tuple[int, str]:
    criterion = next(c for c in compiled.evaluate(facts, [], now=NOW).criteria if c.criterion == name)
    return criterion.points, criterion.reason


IN = {"name": "c", "type": "in", "field": "industry", "values": ["Software", "financial services"], "points": 10}
DOMAIN = {"name": "c", "type": "domain", "field": "email_domain", "domains": ["target.example"], "points": 10}
REGION = {"name": "c", "type": "region", "regions": ["DACH", "nordics"], "countries": ["au"], "points": 10}
CONTAINS = {"name": "c", "type": "contains_any", "field": "attributes.technologies", "values": ["Salesforce", "dbt"],
            "points": 10}  # fmt: skip
FLAG = {"name": "c", "type": "flag", "field": "email_free_mail", "points": -20}
NOT_FLAG = {"name": "c", "type": "flag", "field": "marketing_opt_in", "equals": False, "points": -5}
EXISTS = {"name": "c", "type": "exists", "field": "website", "points": 10}
ACCOUNT_IN = {**IN, "field": "account.industry"}
BANDS = {"name": "c", "type": "bands", "field": "employees", "bands": [
    {"max": 9, "points": -5}, {"min": 10, "max": 199, "points": 10}, {"min": 200, "max": 999, "points": 20},
    {"min": 5000, "points": 5}]}  # fmt: skip
SENIORITY = {"name": "c", "type": "keywords", "groups": [
    {"label": "executive", "words": ["ceo", "chief"], "points": 25},
    {"label": "vp", "words": ["vp", "vice president"], "points": 20},
    {"label": "manager", "words": ["manager"], "points": 8}]}  # fmt: skip


@pytest.mark.parametrize(
    ("criterion", "facts", "points", "reason"),
    [
        (IN, {"industry": "SOFTWARE "}, 10, "industry 'SOFTWARE ' in list"),
        (IN, {"industry": "Financial Services"}, 10, "industry 'Financial Services' in list"),
        (IN, {"industry": "retail"}, 0, "industry 'retail' not in list"),
        (IN, {}, 0, "no industry"),
        (ACCOUNT_IN, {"account": {"industry": "software"}}, 10, "account.industry 'software' in list"),
        (ACCOUNT_IN, {"industry": "software"}, 0, "no account.industry"),
        (DOMAIN, {"email_domain": "target.example"}, 10, "email_domain target.example under target.example"),
        (DOMAIN, {"email_domain": "eu.Target.example"}, 10, "email_domain eu.target.example under target.example"),
        (DOMAIN, {"email_domain": "nottarget.example"}, 0, "email_domain 'nottarget.example' not listed"),
        (REGION, {"country": "de"}, 10, "country 'DE' in DACH+NORDICS+listed countries"),
        (REGION, {"country": "SE"}, 10, "country 'SE' in DACH+NORDICS+listed countries"),
        (REGION, {"country": "AU"}, 10, "country 'AU' in DACH+NORDICS+listed countries"),
        (REGION, {"country": "FR"}, 0, "country 'FR' not in DACH+NORDICS+listed countries"),
        (REGION, {"country": None}, 0, "no country"),
        (
            CONTAINS,
            {"attributes": {"technologies": "HubSpot, salesforce"}},
            10,
            "attributes.technologies has 'salesforce'",
        ),
        (CONTAINS, {"attributes": {"technologies": ["DBT", "looker"]}}, 10, "attributes.technologies has 'dbt'"),
        (CONTAINS, {"attributes": {"technologies": "salesforcex"}}, 0, "attributes.technologies has none listed"),
        (CONTAINS, {"attributes": {}}, 0, "no attributes.technologies"),
        (FLAG, {"email_free_mail": True}, -20, "email_free_mail is true"),
        (FLAG, {"email_free_mail": False}, 0, "email_free_mail is false"),
        (FLAG, {}, 0, "no email_free_mail"),
        (NOT_FLAG, {"marketing_opt_in": False}, -5, "marketing_opt_in is false"),
        (NOT_FLAG, {"marketing_opt_in": True}, 0, "marketing_opt_in is true"),
        (EXISTS, {"website": "https://a.example"}, 10, "website given"),
        (EXISTS, {"website": ""}, 0, "no website"),
        (BANDS, {"employees": 9}, -5, "employees 9 in band up to 9"),
        (BANDS, {"employees": 10}, 10, "employees 10 in band 10-199"),
        (BANDS, {"employees": 199}, 10, "employees 199 in band 10-199"),
        (BANDS, {"employees": 200}, 20, "employees 200 in band 200-999"),
        (BANDS, {"employees": 450}, 20, "employees 450 in band 200-999"),
        (BANDS, {"employees": 999}, 20, "employees 999 in band 200-999"),
        (BANDS, {"employees": 1000}, 0, "employees 1000 in no band"),
        (BANDS, {"employees": 5000}, 5, "employees 5000 in band 5000+"),
        (BANDS, {"employees": "1,200"}, 0, "employees 1200 in no band"),
        (BANDS, {"employees": True}, 0, "no employees"),
        (BANDS, {}, 0, "no employees"),
        (SENIORITY, {"job_title": "Chief Revenue Officer"}, 25, "job_title executive ('chief')"),
        (SENIORITY, {"job_title": "VP, Marketing"}, 20, "job_title vp ('vp')"),
        (SENIORITY, {"job_title": "Vice  President Sales"}, 20, "job_title vp ('vice  president')"),
        (SENIORITY, {"job_title": "Sales Manager to the CEO"}, 25, "job_title executive ('ceo')"),
        (SENIORITY, {"job_title": "MVP Engineer"}, 0, "job_title 'MVP Engineer' matches no group"),
        (SENIORITY, {"job_title": "Managers' assistant"}, 0, 'job_title "Managers\' assistant" matches no group'),
        (SENIORITY, {}, 0, "no job_title"),
    ],
)
def test_fit_criterion(criterion: dict[str, Any], facts: dict[str, Any], points: int, reason: str) -> None:
    compiled = icp(criterion)
    assert points_of(compiled, facts) == (points, reason)
    # A second evaluation of the same value gives the same answer (outcomes are remembered per value).
    assert points_of(compiled, facts) == (points, reason)


def test_every_criterion_is_explained_even_at_zero_and_fit_is_their_sum() -> None:
    compiled = icp({**IN, "name": "industry"}, {**BANDS, "name": "size"}, {**FLAG, "name": "free_mail"})
    result = compiled.evaluate({"industry": "software", "employees": 3}, [], now=NOW)
    fit = [(c.criterion, c.points, c.kind) for c in result.criteria if c.kind is CriterionKind.FIT]
    assert fit == [("industry", 10, "fit"), ("size", -5, "fit"), ("free_mail", 0, "fit")]
    assert result.fit == 5
    assert sum(c.points for c in result.criteria) == result.fit + result.engagement


HALF_LIFE = {"points": {"demo_requested": 40, "email_clicked": 4}, "half_life_days": 10}


@pytest.mark.parametrize(
    ("ages_days", "expected"),
    [
        ([0], 40),
        ([10], 20),
        ([20], 10),
        ([30], 5),
        ([5], 28),  # 40 * 0.5 ** 0.5 = 28.28
        ([10, 10], 40),
        ([-3], 40),  # an engagement stamped after `now` counts as new
        ([3650], 0),
    ],
)
def test_decay_halves_points_every_half_life(ages_days: list[float], expected: int) -> None:
    compiled = icp(engagement=HALF_LIFE)
    engagements = [Engagement(ActivityType.DEMO_REQUESTED, NOW - timedelta(days=age)) for age in ages_days]
    result = compiled.evaluate({}, engagements, now=NOW)
    assert result.engagement == expected
    demo = next(c for c in result.criteria if c.criterion == "demo_requested")
    assert (demo.points, demo.kind) == (expected, CriterionKind.ENGAGEMENT)


def test_decay_is_exact_over_fractions_of_a_day_and_naive_times_are_utc() -> None:
    compiled = icp(engagement={"points": {"demo_requested": 1000}, "half_life_days": 2})
    at = NOW.replace(tzinfo=None) - timedelta(hours=36)  # 0.75 half-lives
    assert compiled.evaluate({}, [Engagement(ActivityType.DEMO_REQUESTED, at)], now=NOW).engagement == round(
        1000 * 0.5**0.75
    )


def test_engagement_types_add_up_unlisted_types_count_nothing_and_the_cap_is_explained() -> None:
    compiled = icp(engagement={"points": {"demo_requested": 40, "email_clicked": 4}, "half_life_days": None, "cap": 45})
    events = [
        Engagement(ActivityType.EMAIL_CLICKED, NOW - timedelta(days=400)),
        Engagement(ActivityType.EMAIL_CLICKED, NOW),
        Engagement(ActivityType.WEBINAR_ATTENDED, NOW),
    ]
    result = compiled.evaluate({}, events, now=NOW)
    explained = {c.criterion: (c.points, c.reason) for c in result.criteria if c.kind is CriterionKind.ENGAGEMENT}
    assert explained == {
        "demo_requested": (0, "none"),
        "email_clicked": (8, "2x"),
        "engagement_cap": (0, "8 within cap 45"),
    }
    result = compiled.evaluate({}, [*events, Engagement(ActivityType.DEMO_REQUESTED, NOW)], now=NOW)
    assert result.engagement == 45
    assert next(c for c in result.criteria if c.criterion == "engagement_cap").points == -3


@pytest.mark.parametrize(
    ("fit_points", "engagement_events", "grade"),
    [
        (30, 10, "A1"),  # 10 clicks: 40 points
        (29, 9, "B2"),  # 36 points
        (20, 5, "B2"),  # 20 points: grade 2 starts at 20
        (19, 4, "C3"),  # 16 points
        (10, 2, "C3"),  # 8 points
        (9, 1, "D4"),  # 4 points: grade 3 starts at 5
        (-5, 0, "D4"),
    ],
)
def test_grade_bands_edges(fit_points: int, engagement_events: int, grade: str) -> None:
    compiled = icp({"name": "c", "type": "exists", "field": "company", "points": fit_points})
    clicks = [Engagement(ActivityType.EMAIL_CLICKED, NOW)] * engagement_events
    assert compiled.evaluate({"company": "AE"}, clicks, now=NOW).grade == grade


MQL = {
    "any": [
        {"name": "fit_and_engaged", "fit_at_least": "B", "engagement_at_least": 2},
        {"name": "demo_request", "fit_at_least": "C", "activity": "demo_requested", "within_days": 30},
        {"name": "clicked_ever", "fit_at_least": "A", "activity": "email_clicked"},
    ]
}


@pytest.mark.parametrize(
    ("fit_points", "events", "mql", "reason"),
    [
        (20, [("email_clicked", 0)] * 5, True, "fit_and_engaged: fit B, engagement 2"),
        (20, [("email_clicked", 0)] * 4, False,
         "fit_and_engaged: engagement 3 below 2; demo_request: no demo_requested in 30 days; "
         "clicked_ever: fit B below A"),
        (10, [("demo_requested", 29)], True, "demo_request: fit C, engagement 1, demo_requested"),
        (10, [("demo_requested", 31)], False,
         "fit_and_engaged: fit C below B; demo_request: no demo_requested in 30 days; clicked_ever: fit C below A"),
        (9, [("demo_requested", 0)], False,
         "fit_and_engaged: fit D below B; demo_request: fit D below C; clicked_ever: fit D below A"),
        (30, [("email_clicked", 900)], True, "clicked_ever: fit A, engagement 4, email_clicked"),
        (30, [], False,
         "fit_and_engaged: engagement 4 below 2; demo_request: no demo_requested in 30 days; "
         "clicked_ever: no email_clicked"),
    ],
)  # fmt: skip
def test_mql_rule_alternatives_first_that_holds_is_named(
    fit_points: int, events: list[tuple[str, int]], mql: bool, reason: str
) -> None:
    reachable = {"name": "website", "type": "exists", "field": "website", "points": 100}
    compiled = icp({"name": "c", "type": "exists", "field": "company", "points": fit_points}, reachable, mql=MQL)
    engagements = [Engagement(ActivityType(kind), NOW - timedelta(days=age)) for kind, age in events]
    result = compiled.evaluate({"company": "AE"}, engagements, now=NOW)
    assert (result.mql, result.mql_reason) == (mql, reason)


DISQUALIFIERS = [
    {"name": "competitor", "type": "domain", "field": "email_domain", "domains": ["rival.example"],
     "reason": "works for a competitor"},
    {"name": "student", "type": "keywords", "words": ["student", "intern"]},
    {"name": "embargoed", "type": "region", "countries": ["KP"]},
    {"name": "disposable", "type": "flag", "field": "email_disposable"},
    {"name": "excluded_industry", "type": "in", "field": "account.industry", "values": ["gambling"]},
    {"name": "uses_rival", "type": "contains_any", "field": "attributes.technologies", "values": ["rivalsoft"]},
]  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "disqualified"),
    [
        ({"email_domain": "mail.rival.example"}, "competitor: works for a competitor"),
        ({"job_title": "PhD Student"}, "student: job_title says 'student'"),
        ({"job_title": "Internal Sales"}, None),
        ({"country": "kp"}, "embargoed: country 'KP' in listed countries"),
        ({"email_disposable": True}, "disposable: email_disposable is true"),
        ({"account": {"industry": "Gambling"}}, "excluded_industry: account.industry 'Gambling' in list"),
        ({"attributes": {"technologies": "RivalSoft"}}, "uses_rival: attributes.technologies has 'rivalsoft'"),
        ({"email_domain": "rival.example", "job_title": "Intern"}, "competitor: works for a competitor"),
        ({}, None),
    ],
)
def test_disqualifiers_grade_d_never_mql_and_say_why(facts: dict[str, Any], disqualified: str | None) -> None:
    compiled = icp({"name": "c", "type": "exists", "field": "company", "points": 100}, disqualifiers=DISQUALIFIERS)
    result = compiled.evaluate({"company": "AE", **facts}, [Engagement(ActivityType.DEMO_REQUESTED, NOW)], now=NOW)
    assert result.disqualified == disqualified
    by_kind = [c.criterion for c in result.criteria if c.kind is CriterionKind.DISQUALIFIER]
    assert by_kind == [item["name"] for item in DISQUALIFIERS]
    if disqualified:
        assert (result.grade, result.mql, result.mql_reason) == ("D1", False, f"disqualified ({disqualified})")
        assert result.fit == 100  # the points still show; the grade says no
    else:
        assert (result.grade, result.mql) == ("A1", True)


def test_score_is_fit_plus_engagement_within_0_100() -> None:
    compiled = icp({"name": "c", "type": "exists", "field": "company", "points": 90})
    assert compiled.evaluate({"company": "AE"}, [Engagement(ActivityType.DEMO_REQUESTED, NOW)], now=NOW).score == 100
    assert compiled.evaluate({}, [], now=NOW).score == 0


def test_example_grades_a_demo_lead_and_default_icp_is_valid_and_meaningful() -> None:
    example = compile_icp(IcpDocument.model_validate(EXAMPLE), version="1")
    cto = {"job_title": "CTO", "industry": "software", "employees": 250, "country": "GB", "company": "AE"}
    assert example.evaluate(cto, [], now=NOW).grade == "A4"
    assert example.evaluate(cto, [], now=NOW).mql

    default = default_icp()
    assert (default.version, check(default.document)) == (DEFAULT_VERSION, [])
    executive = {"job_title": "VP Sales", "company": "AE", "employees": 400, "industry": "retail"}
    assert default.evaluate(executive, [], now=NOW).grade == "A4"
    demo = [Engagement(ActivityType.DEMO_REQUESTED, NOW)]
    assert default.evaluate(executive, demo, now=NOW).mql_reason == "fit_and_engaged: fit A, engagement 1"
    assert default.evaluate({"email_free_mail": True}, demo, now=NOW).grade == "D1"
    assert not default.evaluate({"email_free_mail": True}, demo, now=NOW).mql
    assert default.evaluate({"job_title": "Student"}, demo, now=NOW).disqualified == "student: a student"


def test_compiled_icp_does_not_share_state_with_the_document_it_came_from() -> None:
    document = copy.deepcopy(DEFAULT_DOCUMENT)
    compiled = compile_icp(IcpDocument.model_validate(document), version="2")
    document["fit"].clear()
    assert compiled.evaluate({"company": "AE"}, [], now=NOW).fit == 10


def test_decide_agrees_with_evaluate_on_varied_leads() -> None:
    rng = random.Random(8)
    compiled = compile_icp(IcpDocument.model_validate(EXAMPLE), version="1")
    titles = ["CTO", "VP Sales", "Head of Marketing", "Developer", "Student", "Looking for work", None]
    for _ in range(3000):
        facts = {
            "job_title": rng.choice(titles),
            "industry": rng.choice(["software", "retail", None]),
            "employees": rng.choice([None, 40, 150, 450, 2000, 9000]),
            "country": rng.choice(["GB", "DE", "FR", "US", None]),
            "source": rng.choice(["referral", "webinar"]),
            "company": rng.choice(["AE", None]),
            "email_domain": rng.choice(["a.example", "x.rival.example"]),
            "email_free_mail": rng.random() < 0.2,
            "attributes": {"technologies": rng.choice(["", "hubspot", "slack"])},
        }
        engagements = [
            Engagement(
                ActivityType(rng.choice(list(EXAMPLE["engagement"]["points"]))),
                NOW - timedelta(days=rng.uniform(-1, 60)),
            )
            for _ in range(rng.randint(0, 5))
        ]
        evaluated = compiled.evaluate(facts, engagements, now=NOW)
        assert compiled.decide(facts, engagements, now=NOW) == (evaluated.grade, evaluated.mql)


def test_criteria_built_without_validation_equal_validated_ones() -> None:
    compiled = compile_icp(IcpDocument.model_validate(EXAMPLE), version="1")
    result = compiled.evaluate(
        {"job_title": "CTO", "employees": 300}, [Engagement(ActivityType.EMAIL_CLICKED, NOW)], now=NOW
    )
    for criterion in result.criteria:
        validated = ScoreCriterion.model_validate(criterion.model_dump())
        assert (criterion, criterion.model_dump_json()) == (validated, validated.model_dump_json())
        assert criterion.model_fields_set == validated.model_fields_set
