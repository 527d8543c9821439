"""The routing rules document: what `check` refuses, at which JSON pointer, and a refused draft over HTTP."""

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pydantic import ValidationError

from leadrelay.agreements import agreement_router
from leadrelay.agreements.service import stored_document
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.problems import install_problem_handlers
from leadrelay.testing import Storage, migrated, migrations_of
from router.reps.models import Rep
from router.rules.document import EXAMPLE, ROUTING, RoutingDocument, check
from router.teams.models import Team as TeamRow

DEMO_RULES = Path(__file__).resolve().parents[3] / "deploy" / "demo" / "routing.yaml"

Edit = Callable[[dict[str, Any]], None]
QUEUE = {"type": "queue", "team": "team-na"}


def edited(edit: Edit) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def rule(index: int, **changes: Any) -> Edit:
    return lambda document: document["rules"][index].update(changes)


def when(index: int, condition: Any) -> Edit:
    return rule(index, when=condition)


def dropped(index: int, key: str) -> Edit:
    return lambda document: document["rules"][index].pop(key)


def inserted(index: int, new: dict[str, Any]) -> Edit:
    return lambda document: document["rules"].insert(index, new)


def nested(depth: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": "lead.country", "equals": "DE"}
    for _ in range(depth - 1):
        condition = {"not": condition}
    return condition


def deep_fallback(steps: int) -> dict[str, Any]:
    fallback: dict[str, Any] = dict(QUEUE)
    for _ in range(steps - 1):
        fallback = {"type": "team", "team": "team-na", "otherwise": fallback}
    return fallback


TEAM = {"type": "team", "team": "team-na"}


@pytest.mark.parametrize(
    ("edit", "pointer", "message"),
    [
        # catch-all: required, and last
        (when(5, {"field": "lead.country", "equals": "US"}), "/rules/5/when",
         "the last rule must be a catch-all"),
        (when(1, "always"), "/rules/1/when", "only the last rule may be a catch-all: rules after it (4)"),
        (lambda d: d.update(rules=[]), "/rules", "at least one rule is needed"),
        (rule(1, name="enterprise_accounts"), "/rules/1/name", "duplicate name 'enterprise_accounts'"),
        # fields and operators
        (when(2, {"field": "lead.email", "equals": "a@b.example"}), "/rules/2/when/field",
         "unknown field 'lead.email'"),
        (when(2, {"field": "country", "equals": "DE"}), "/rules/2/when/field", "unknown field 'country'"),
        (when(2, {"field": "score.colour", "exists": True}), "/rules/2/when/field", "unknown field 'score.colour'"),
        (when(2, {"field": "lead.attributes.", "exists": True}), "/rules/2/when/field", "unknown field"),
        (when(0, {"all": [{"field": "account.owner", "exists": True}]}), "/rules/0/when/all/0/field",
         "unknown field 'account.owner'"),
        (when(2, {"field": "lead.country"}), "/rules/2/when", "give exactly one of equals, in, range"),
        (when(2, {"field": "lead.country", "equals": "DE", "in": ["AT"]}), "/rules/2/when",
         "(given: equals, in)"),
        (when(2, {"equals": "DE"}), "/rules/2/when/field", "'equals' tests a field: name it"),
        (when(2, {"field": "lead.country", "all": [{"field": "lead.country", "equals": "DE"}]}),
         "/rules/2/when/field", "'all' combines conditions and reads no field"),
        (when(2, {"field": "lead.country", "range": {"min": 1}}), "/rules/2/when/field",
         "'lead.country' holds a country; 'range' reads a number"),
        (when(2, {"field": "lead.employees", "regex": "^1"}), "/rules/2/when/field", "'regex' reads a country or text"),
        (when(2, {"field": "score.mql", "in": [True]}), "/rules/2/when/field", "'in' reads a country or number"),
        (when(2, {"field": "score.mql", "equals": "yes"}), "/rules/2/when/equals", "compare it with true or false"),
        (when(2, {"field": "lead.employees", "equals": "many"}), "/rules/2/when/equals", "compare it with a number"),
        (when(2, {"field": "lead.country", "equals": 49}), "/rules/2/when/equals", "compare it with a text"),
        (when(2, {"field": "lead.employees", "in": [10, "ten"]}), "/rules/2/when/in/1", "compare it with a number"),
        (when(2, {"field": "lead.employees", "range": {}}), "/rules/2/when/range", "give min, max or both"),
        (when(2, {"field": "lead.employees", "range": {"min": 10, "max": 5}}), "/rules/2/when/range/max",
         "max 5 is below min 10"),
        (when(2, {"field": "lead.email_domain", "regex": "(unclosed"}), "/rules/2/when/regex",
         "not a regular expression: missing ), unterminated subpattern"),
        (when(3, {"all": [{"field": "lead.country", "equals": "US"}, {"any": [{"regex": "x"}]}]}),
         "/rules/3/when/all/1/any/0/field", "'regex' tests a field"),
        (when(2, nested(7)), "/rules/2/when/not/not/not/not/not/not", "conditions nest at most 6 deep"),
        (when(2, {"not": {}}), "/rules/2/when/not", "give exactly one of"),
        # actions and fallbacks
        (dropped(3, "otherwise"), "/rules/3/otherwise", "a rep may find nobody available: name a fallback"),
        (dropped(4, "otherwise"), "/rules/4/otherwise", "a team may find nobody available"),
        (rule(1, otherwise=QUEUE), "/rules/1/otherwise", "a nurture always takes the lead: nothing after it"),
        (rule(2, otherwise=QUEUE), "/rules/2/otherwise", "a queue always takes the lead"),
        (rule(0, otherwise=TEAM), "/rules/0/otherwise/otherwise", "a team may find nobody available"),
        (rule(3, otherwise={**QUEUE, "otherwise": QUEUE}), "/rules/3/otherwise/otherwise",
         "a queue always takes the lead"),
        (rule(3, action={"type": "rep", "rep": "rep-grace", "otherwise": QUEUE}), "/rules/3/action/otherwise",
         "a rule's fallback is its own `otherwise`"),
        (rule(3, otherwise=deep_fallback(5)), "/rules/3/otherwise/otherwise/otherwise/otherwise",
         "at most 3 fallbacks in a chain"),
        # nurture: never an MQL
        (rule(5, action={"type": "nurture"}), "/rules/5/action", "the catch-all takes every lead"),
        (inserted(0, {"name": "hot", "when": {"all": [{"field": "score.mql", "equals": True}]},
                      "action": {"type": "nurture"}}), "/rules/0/action", "only matches MQLs"),
        (rule(4, otherwise={"type": "nurture"}), "/rules/4/otherwise", "nurture is a fallback only in a rule whose"),
    ],
)  # fmt: skip
def test_check_refuses_with_a_pointer(edit: Edit, pointer: str, message: str) -> None:
    errors = check(RoutingDocument.model_validate(edited(edit)))
    assert [(at, text) for at, text in errors if at == pointer and message in text], errors


def test_nurture_as_a_fallback_of_a_rule_for_leads_that_are_not_mqls() -> None:
    document = edited(
        inserted(0, {"name": "cold", "when": {"all": [{"field": "score.mql", "equals": False},
                                                      {"field": "lead.country", "equals": "DE"}]},
                     "action": TEAM, "otherwise": {"type": "nurture"}})
    )  # fmt: skip
    assert check(RoutingDocument.model_validate(document)) == []


def test_the_example_and_the_demo_rules_pass_check() -> None:
    assert check(RoutingDocument.model_validate(EXAMPLE)) == []
    demo = yaml.safe_load(DEMO_RULES.read_text())
    assert set(demo) == {"kind", "note", "document"}  # the export layout `leadrelay agreements import` takes
    assert demo["kind"] == "routing"
    assert demo["document"] == EXAMPLE  # docs/routing.md and OpenAPI show what `make run` signs


def test_a_stored_document_reads_back_as_written() -> None:
    parsed = RoutingDocument.model_validate(EXAMPLE)
    stored = stored_document(parsed)
    assert stored == EXAMPLE  # `when: always` stays `always`; no defaults added; aliases (`in`, `not`) kept
    assert RoutingDocument.model_validate(stored) == parsed
    catch_all = edited(dropped(5, "when"))
    assert RoutingDocument.model_validate(catch_all).rules[5].when is None


@pytest.mark.parametrize(
    ("edit", "location"),
    [
        (rule(0, colour="red"), ("rules", 0, "colour")),
        (rule(5, action={"type": "pool", "reps": []}), ("rules", 5, "action", "reps")),  # no `pool` level
        (rule(5, otherwise={"type": "queue"}), ("rules", 5, "otherwise", "team")),
        (rule(5, action={"type": "teleport"}), ("rules", 5, "action")),
        (rule(4, action={**TEAM, "strategy": "random"}), ("rules", 4, "action", "strategy")),
        (when(2, {"field": "lead.country", "regex": "x" * 201}), ("rules", 2, "when", "regex")),
        (when(2, {"field": "lead.country", "in": []}), ("rules", 2, "when", "in")),
        (when(2, {"field": "lead.country", "is": "DE"}), ("rules", 2, "when", "is")),
        (rule(0, name=" padded"), ("rules", 0, "name")),
        (lambda d: d.update(rules=[d["rules"][5]] * 1001), ("rules",)),
    ],
)
def test_structural_errors_come_from_pydantic(edit: Edit, location: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        RoutingDocument.model_validate(edited(edit))
    assert [error["loc"] for error in raised.value.errors()] == [location]


WRITER = "lr_test_routing_writer_0123456789"


@pytest.fixture
async def router_api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Router's routing agreement routes in process, on the test's backend, with a key that may draft."""
    async with migrated(database_url, migrations_of("router")) as storage:
        await _add_writer(storage)
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(agreement_router(ROUTING))
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://router", headers=headers) as client:
            yield client


async def _add_writer(storage: Storage) -> None:
    async with storage.sessions() as session:
        scopes = [Scope.ROUTING_WRITE, Scope.ROUTING_READ]
        session.add(ApiKey(id="key_ops", name="ops", team=Team.OPS, scopes=scopes, key_hash=hash_key(WRITER)))
        # The teams and reps EXAMPLE names: a draft naming one router does not know is refused.
        session.add_all([TeamRow(id=team, name=team, timezone="UTC") for team in ("team-na", "team-emea")])
        session.add_all([Rep(id=rep, name=rep, teams=["team-na"]) for rep in ("rep-grace", "rep-alan")])
        await session.commit()


async def test_a_draft_that_cannot_route_every_lead_is_refused_with_the_pointer(
    router_api: httpx.AsyncClient,
) -> None:
    bad = edited(
        when(0, {"all": [{"field": "account.owner_rep_id", "exists": True}, {"field": "lead.size", "exists": True}]})
    )
    refused = await router_api.post("/v1/routing/versions", json={"document": bad, "note": "typo"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [(error["pointer"], error["message"].split(":")[0]) for error in refused.json()["errors"]] == [
        ("/document/rules/0/when/all/1/field", "unknown field 'lead.size'")
    ]
    regex = await router_api.post(
        "/v1/routing/versions", json={"document": edited(when(2, {"field": "lead.source", "regex": "[a-"}))}
    )
    assert (regex.status_code, regex.json()["errors"][0]["pointer"]) == (422, "/document/rules/2/when/regex")
    structural = await router_api.post(
        "/v1/routing/versions", json={"document": edited(rule(5, action={"type": "pool", "reps": []}))}
    )
    assert [error["pointer"] for error in structural.json()["errors"]] == ["/document/rules/5/action/reps"]
    assert (await router_api.get("/v1/routing/versions")).json() == {"versions": []}

    drafted = await router_api.post("/v1/routing/versions", json={"document": EXAMPLE, "note": "demo"})
    assert drafted.status_code == 201, drafted.text
    assert drafted.json()["document"] == EXAMPLE
