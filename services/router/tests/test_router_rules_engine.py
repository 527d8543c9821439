"""The routing rules engine: every operator and combinator, first-match order, fallbacks as data, and explanations."""

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from leadrelay.events import AccountMatch, LeadReceived, LeadScored, MatchMethod
from leadrelay.stages import LeadStage
from router.rules.document import EXAMPLE, RoutingDocument
from router.rules.engine import CompiledRules, Failure, InvalidRules, RuleOutcome, compile_rules, facts_of

QUEUE = {"type": "queue", "team": "team-na"}
CATCH_ALL = {"name": "everyone_else", "when": "always", "action": QUEUE}


def one_rule(condition: dict[str, Any]) -> CompiledRules:
    """The condition as the first of two rules, the second the catch-all."""
    rules = [{"name": "tested", "when": condition, "action": {"type": "queue", "team": "team-emea"}}, CATCH_ALL]
    return compile_rules(RoutingDocument.model_validate({"rules": rules}), version="t")


def matches(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether the condition holds, by the fast walk; the explanation must agree."""
    decision = one_rule(condition).evaluate(facts)
    assert decision.evaluated[0].matched is (decision.index == 0)
    return decision.index == 0


DE = {"lead.country": "DE"}


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        # equals: text ignores case and surrounding spaces; numbers and flags compare as such
        ({"field": "lead.country", "equals": "de"}, {"lead.country": " DE "}, True),
        ({"field": "lead.country", "equals": "DE"}, {"lead.country": "AT"}, False),
        ({"field": "lead.country", "equals": "DE"}, {}, False),
        ({"field": "lead.country", "equals": "DE"}, {"lead.country": ""}, False),
        ({"field": "lead.employees", "equals": 500}, {"lead.employees": 500}, True),
        ({"field": "lead.employees", "equals": 500}, {"lead.employees": 501}, False),
        ({"field": "score.mql", "equals": True}, {"score.mql": True}, True),
        ({"field": "score.mql", "equals": False}, {"score.mql": True}, False),
        ({"field": "score.mql", "equals": False}, {"score.mql": False}, True),
        ({"field": "score.mql", "equals": False}, {}, False),
        ({"field": "score.engagement_grade", "equals": 1}, {"score.engagement_grade": 1}, True),
        # in
        ({"field": "lead.country", "in": ["DE", "AT", "CH"]}, {"lead.country": "ch"}, True),
        ({"field": "lead.country", "in": ["DE", "AT", "CH"]}, {"lead.country": "FR"}, False),
        ({"field": "lead.country", "in": ["DE", "AT", "CH"]}, {}, False),
        ({"field": "lead.employees", "in": [10, 20]}, {"lead.employees": 20}, True),
        ({"field": "score.grade", "in": ["A1", "A2", "B1"]}, {"score.grade": "B1"}, True),
        ({"field": "lead.attributes.tags", "in": ["vip"]}, {"lead.attributes.tags": ["new", "VIP"]}, True),
        ({"field": "lead.attributes.tags", "in": ["vip"]}, {"lead.attributes.tags": ["new"]}, False),
        ({"field": "lead.attributes.tags", "in": ["vip"]}, {"lead.attributes.tags": []}, False),
        ({"field": "lead.attributes.seats", "in": [5]}, {"lead.attributes.seats": "5"}, True),
        # range: bounds included, either open
        ({"field": "lead.employees", "range": {"min": 200, "max": 999}}, {"lead.employees": 200}, True),
        ({"field": "lead.employees", "range": {"min": 200, "max": 999}}, {"lead.employees": 999}, True),
        ({"field": "lead.employees", "range": {"min": 200, "max": 999}}, {"lead.employees": 1000}, False),
        ({"field": "lead.employees", "range": {"min": 200, "max": 999}}, {"lead.employees": 199}, False),
        ({"field": "lead.employees", "range": {"min": 200}}, {"lead.employees": 10**9}, True),
        ({"field": "lead.employees", "range": {"max": 50}}, {"lead.employees": -3}, True),
        ({"field": "lead.employees", "range": {"min": 0}}, {}, False),
        ({"field": "score.score", "range": {"min": 49.5, "max": 50.5}}, {"score.score": 50}, True),
        ({"field": "lead.attributes.seats", "range": {"min": 10}}, {"lead.attributes.seats": "1,200"}, True),
        ({"field": "lead.attributes.seats", "range": {"min": 10}}, {"lead.attributes.seats": "many"}, False),
        ({"field": "lead.attributes.seats", "range": {"min": 10}}, {"lead.attributes.seats": True}, False),
        # regex: searches, ignores case
        ({"field": "lead.email_domain", "regex": r"\.de$"}, {"lead.email_domain": "shop.example.DE"}, True),
        ({"field": "lead.email_domain", "regex": r"\.de$"}, {"lead.email_domain": "de.example"}, False),
        ({"field": "lead.job_title", "regex": r"^vp\b"}, {"lead.job_title": "VP Sales"}, True),
        ({"field": "lead.job_title", "regex": "."}, {}, False),
        # exists
        ({"field": "account.owner_rep_id", "exists": True}, {"account.owner_rep_id": "rep-ada"}, True),
        ({"field": "account.owner_rep_id", "exists": True}, {"account.owner_rep_id": None}, False),
        ({"field": "account.owner_rep_id", "exists": True}, {"account.owner_rep_id": "  "}, False),
        ({"field": "account.owner_rep_id", "exists": False}, {}, True),
        ({"field": "account.owner_rep_id", "exists": False}, {"account.owner_rep_id": "rep-ada"}, False),
        ({"field": "score.mql", "exists": True}, {"score.mql": False}, True),
        # combinators
        ({"all": [{"field": "lead.country", "equals": "DE"}, {"field": "score.mql", "equals": True}]},
         {"lead.country": "DE", "score.mql": True}, True),
        ({"all": [{"field": "lead.country", "equals": "DE"}, {"field": "score.mql", "equals": True}]},
         {"lead.country": "DE", "score.mql": False}, False),
        ({"any": [{"field": "lead.country", "equals": "DE"}, {"field": "score.mql", "equals": True}]},
         {"lead.country": "FR", "score.mql": True}, True),
        ({"any": [{"field": "lead.country", "equals": "DE"}, {"field": "score.mql", "equals": True}]},
         {"lead.country": "FR", "score.mql": False}, False),
        ({"not": {"field": "lead.country", "equals": "DE"}}, {"lead.country": "FR"}, True),
        ({"not": {"field": "lead.country", "equals": "DE"}}, DE, False),
        ({"not": {"field": "lead.country", "equals": "DE"}}, {}, True),
        # nesting: (DE or AT) and not (a student, or under 10 people)
        ({"all": [{"any": [{"field": "lead.country", "equals": "DE"}, {"field": "lead.country", "equals": "AT"}]},
                  {"not": {"any": [{"field": "lead.job_title", "regex": "student"},
                                   {"field": "lead.employees", "range": {"max": 9}}]}}]},
         {"lead.country": "AT", "lead.job_title": "CTO", "lead.employees": 50}, True),
        ({"all": [{"any": [{"field": "lead.country", "equals": "DE"}, {"field": "lead.country", "equals": "AT"}]},
                  {"not": {"any": [{"field": "lead.job_title", "regex": "student"},
                                   {"field": "lead.employees", "range": {"max": 9}}]}}]},
         {"lead.country": "AT", "lead.job_title": "CTO", "lead.employees": 5}, False),
        ({"all": [{"all": [{"all": [{"field": "lead.source", "in": ["referral"]}]}]}]},
         {"lead.source": "Referral"}, True),
    ],
)  # fmt: skip
def test_operators_and_combinators(condition: dict[str, Any], facts: dict[str, Any], expected: bool) -> None:
    assert matches(condition, facts) is expected


@pytest.mark.parametrize(
    ("condition", "facts", "failure"),
    [
        ({"field": "lead.country", "in": ["DE", "AT"]}, {"lead.country": "FR"},
         Failure("/rules/0/when", "lead.country", "FR", "lead.country 'FR' not in [DE, AT]")),
        ({"field": "lead.country", "equals": "DE"}, {},
         Failure("/rules/0/when", "lead.country", None, "no lead.country")),
        ({"field": "score.mql", "equals": True}, {"score.mql": False},
         Failure("/rules/0/when", "score.mql", False, "score.mql false is not true")),
        ({"field": "lead.employees", "range": {"min": 200, "max": 999}}, {"lead.employees": 40},
         Failure("/rules/0/when", "lead.employees", 40, "lead.employees 40 outside 200-999")),
        ({"field": "lead.email_domain", "regex": r"\.de$"}, {"lead.email_domain": "a.fr"},
         Failure("/rules/0/when", "lead.email_domain", "a.fr", r"lead.email_domain 'a.fr' does not match /\.de$/")),
        ({"field": "account.owner_rep_id", "exists": False}, {"account.owner_rep_id": "rep-ada"},
         Failure("/rules/0/when", "account.owner_rep_id", "rep-ada", "account.owner_rep_id is 'rep-ada'")),
        ({"all": [{"field": "lead.country", "equals": "DE"}, {"field": "lead.employees", "range": {"min": 10}}]},
         {"lead.country": "DE", "lead.employees": 3},
         Failure("/rules/0/when/all/1", "lead.employees", 3, "lead.employees 3 outside 10+")),
        ({"not": {"field": "lead.country", "equals": "DE"}}, DE,
         Failure("/rules/0/when", "lead.country", "DE", "not: lead.country is 'DE' held")),
        ({"any": [{"field": "lead.country", "equals": "DE"}, {"field": "score.grade", "in": ["A1"]}]},
         {"lead.country": "FR", "score.grade": "B2"},
         Failure("/rules/0/when", "lead.country", "FR",
                 "none of 2 held: lead.country 'FR' is not 'DE'; score.grade 'B2' not in [A1]")),
    ],
)  # fmt: skip
def test_a_rule_that_did_not_match_says_the_first_failing_condition_and_the_value_seen(
    condition: dict[str, Any], facts: dict[str, Any], failure: Failure
) -> None:
    decision = one_rule(condition).evaluate(facts)
    assert decision.evaluated == (RuleOutcome("tested", False, failure), RuleOutcome("everyone_else", True))


def rules(*named: tuple[str, dict[str, Any] | str]) -> CompiledRules:
    listed = [{"name": name, "when": condition, "action": {"type": "queue", "team": name}} for name, condition in named]
    return compile_rules(RoutingDocument.model_validate({"rules": listed}), version="7")


def test_the_first_matching_rule_wins_and_later_rules_are_not_walked() -> None:
    compiled = rules(
        ("germany", {"field": "lead.country", "equals": "DE"}),
        ("big", {"field": "lead.employees", "range": {"min": 1000}}),
        ("big_germany", {"all": [{"field": "lead.country", "equals": "DE"},
                                 {"field": "lead.employees", "range": {"min": 1000}}]}),
        ("rest", "always"),
    )  # fmt: skip
    assert compiled.evaluate({"lead.country": "DE", "lead.employees": 5000}).rule == "germany"
    big = compiled.evaluate({"lead.country": "FR", "lead.employees": 5000})
    assert (big.rule, big.index, big.rule_path, big.version) == ("big", 1, ["germany", "big"], "7")
    assert [outcome.matched for outcome in big.evaluated] == [False, True]
    rest = compiled.evaluate({})
    assert rest.rule_path == ["germany", "big", "big_germany", "rest"]
    assert rest.action.model_dump() == {"type": "queue", "team": "rest", "otherwise": None}


def test_the_action_and_its_fallback_chain_are_data() -> None:
    compiled = compile_rules(RoutingDocument.model_validate(EXAMPLE), version="3")
    decision = compiled.evaluate({"account.owner_rep_id": "rep-default", "lead.employees": 8000, "score.mql": True})
    assert decision.rule == "enterprise_accounts"
    assert decision.as_dict() == {
        "version": "3",
        "rule": "enterprise_accounts",
        "action": {"type": "account_owner"},
        "fallbacks": [
            {"type": "team", "team": "team-na", "strategy": "least_loaded"},
            {"type": "queue", "team": "team-na"},
        ],
        "evaluated": [{"rule": "enterprise_accounts", "matched": True}],
        "evaluated_omitted": 0,
    }
    queued = compiled.evaluate({"lead.source": "trade-show", "score.mql": True, "score.fit_grade": "A"})
    assert (queued.rule, queued.action.type, queued.fallbacks) == ("trade_show_follow_up", "queue", ())


def test_an_mql_is_never_nurtured_the_rule_is_skipped_with_the_reason() -> None:
    compiled = rules(("cold", {"field": "lead.country", "equals": "DE"}), ("rest", "always"))
    document = compiled.document.model_dump(by_alias=True, exclude_unset=True)
    document["rules"][0]["action"] = {"type": "nurture"}
    nurturing = compile_rules(RoutingDocument.model_validate(document), version="1")
    assert nurturing.evaluate({"lead.country": "DE", "score.mql": False}).rule == "cold"
    mql = nurturing.evaluate({"lead.country": "DE", "score.mql": True})
    assert mql.rule == "rest"
    assert mql.evaluated[0] == RuleOutcome(
        "cold", False, Failure("/rules/0/action", "score.mql", True, "an MQL is never nurtured")
    )


def test_a_bounded_explanation_keeps_the_matched_rule_and_counts_the_rest() -> None:
    compiled = rules(*[(f"r{n}", {"field": "lead.country", "equals": f"X{n}"}) for n in range(10)], ("rest", "always"))
    decision = compiled.evaluate(DE)
    bounded = decision.as_dict(limit=4)
    assert [outcome["rule"] for outcome in bounded["evaluated"]] == ["r0", "r1", "r2", "rest"]
    assert bounded["evaluated_omitted"] == 7
    assert bounded["evaluated"][1] == {
        "rule": "r1", "matched": False, "at": "/rules/1/when", "field": "lead.country", "seen": "DE",
        "reason": "lead.country 'DE' is not 'X1'",
    }  # fmt: skip
    assert len(decision.as_dict()["evaluated"]) == 11


def test_an_unchecked_document_does_not_compile() -> None:
    document = RoutingDocument.model_validate({"rules": [{"name": "only", "when": DE_CONDITION, "action": QUEUE}]})
    with pytest.raises(InvalidRules, match="the last rule must be a catch-all"):
        compile_rules(document, version="1")


DE_CONDITION = {"field": "lead.country", "equals": "DE"}


def test_facts_of_a_scored_lead() -> None:
    lead = LeadReceived(
        lead_id="lead-1", email="ada@analytical.example", first_name="Ada", country="GB", source="webinar",
        received_at=datetime(2026, 11, 27, tzinfo=UTC), employees=250, email_domain="analytical.example",
        attributes={"plan": "pro"},
    )  # fmt: skip
    scored = LeadScored(
        lead_id="lead-1", score=72, stage=LeadStage.MQL, icp_version="2", explanation=[], scored_at=lead.received_at,
        lead=lead, fit=50, engagement=22, grade="B2", mql=True,
        account=AccountMatch(
            account_id="acc-analytical", method=MatchMethod.DOMAIN, confidence=1, owner_rep_id="rep-ada"
        ),
    )  # fmt: skip
    facts = facts_of(scored)
    assert {key: facts[key] for key in ("lead.country", "lead.employees", "lead.attributes.plan")} == {
        "lead.country": "GB", "lead.employees": 250, "lead.attributes.plan": "pro",
    }  # fmt: skip
    assert (facts["score.grade"], facts["score.fit_grade"], facts["score.engagement_grade"]) == ("B2", "B", 2)
    assert (facts["score.mql"], facts["score.stage"], facts["account.owner_rep_id"]) == (True, "mql", "rep-ada")
    assert facts["account.method"] == "domain"
    assert not any(key.split(".")[-1] == "email" or "name" in key for key in facts)  # no personal data
    compiled = compile_rules(RoutingDocument.model_validate(EXAMPLE), version="1")
    assert compiled.evaluate(facts).rule == "emea"
    assert "account.owner_rep_id" not in facts_of(scored.model_copy(update={"account": None}))


CONDITIONS: list[dict[str, Any]] = [
    {"field": "lead.country", "in": ["DE", "AT", "CH", "GB"]},
    {"field": "lead.country", "equals": "US"},
    {"field": "lead.employees", "range": {"min": 200, "max": 999}},
    {"field": "lead.employees", "range": {"min": 1000}},
    {"field": "lead.employees", "equals": 50},
    {"field": "score.grade", "in": ["A1", "A2", "B1"]},
    {"field": "score.mql", "equals": True},
    {"field": "lead.email_domain", "regex": r"\.(de|uk)$"},
    {"field": "account.owner_rep_id", "exists": True},
    {"field": "lead.attributes.plan", "in": ["pro", 3]},
    {"not": {"field": "lead.source", "equals": "partner"}},
    {"any": [{"field": "lead.source", "equals": "referral"}, {"field": "score.grade", "equals": "A1"}]},
]


def random_facts(rng: random.Random) -> dict[str, Any]:
    facts = {
        "lead.country": rng.choice(["DE", "at", "US", "FR", "GB ", None, ""]),
        "lead.employees": rng.choice([None, 50, 199, 200, 999, 1000, 5000, rng.randrange(3000)]),
        "score.grade": rng.choice(["A1", "A2", "b1", "C3", None]),
        "score.mql": rng.choice([True, False, None]),
        "lead.email_domain": rng.choice(["x.de", "x.co.uk", "x.com", None]),
        "account.owner_rep_id": rng.choice(["rep-ada", None, ""]),
        "lead.attributes.plan": rng.choice(["Pro", "free", 3, "3", ["pro", "x"], [], None, True]),
        "lead.source": rng.choice(["partner", "referral", "webinar"]),
    }
    return {key: value for key, value in facts.items() if value is not None or rng.random() < 0.5}


def test_the_fast_walk_decides_as_the_explaining_walk_does() -> None:
    rng = random.Random(9)
    for _ in range(30):
        listed = []
        for number in range(rng.randrange(1, 25)):
            parts = rng.sample(CONDITIONS, rng.randrange(1, 4))
            condition = parts[0] if len(parts) == 1 and rng.random() < 0.5 else {"all": parts}
            action: dict[str, Any] = {"type": "queue", "team": "t"}
            if rng.random() < 0.2 and not any(part.get("field") == "score.mql" for part in parts):
                action = {"type": "nurture"}
            listed.append({"name": f"r{number}", "when": condition, "action": action})
        listed.append(CATCH_ALL)
        compiled = compile_rules(RoutingDocument.model_validate({"rules": listed}), version="p")
        for _ in range(200):
            facts = random_facts(rng)
            decision = compiled.evaluate(facts)
            slow = compiled.explain(facts, upto=len(listed) - 1)
            assert decision.index == next(index for index, outcome in enumerate(slow) if outcome.matched), facts
            assert decision.evaluated == slow[: decision.index + 1]
