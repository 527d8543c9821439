"""The SLA policy document: what `check` refuses and where, which terms an assignment gets, and drafts over HTTP."""

import copy
import re
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
from leadrelay.events import EscalationStep, SlaClock
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import ActivityType, LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from sla_monitor.policy.document import EXAMPLE, SLA, SlaDocument, check
from sla_monitor.policy.service import BUILTIN_VERSION, CompiledPolicy, ObligationTerms, builtin_policy

ROOT = Path(__file__).resolve().parents[3]
DEMO_SLA = ROOT / "deploy" / "demo" / "sla.yaml"
SLA_DOCS = ROOT / "docs" / "sla.md"

Edit = Callable[[dict[str, Any]], None]


def edited(edit: Edit) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def obligation(index: int, **changes: Any) -> Edit:
    return lambda document: document["obligations"][index].update(changes)


def targets(index: int, *new: dict[str, Any]) -> Edit:
    return obligation(index, targets=list(new))


@pytest.mark.parametrize(
    ("edit", "pointer", "message"),
    [
        (obligation(1, name="accept"), "/obligations/1/name", "duplicate name 'accept'"),
        (obligation(0, met_by=["accepted", "email_clicked"]), "/obligations/0/met_by/1",
         "email_clicked is the lead's engagement, not a rep's action"),
        (obligation(0, met_by=["accepted", "accepted"]), "/obligations/0/met_by/1", "accepted is listed twice"),
        (obligation(1, escalation=["remind", "reassign", "remind"]), "/obligations/1/escalation/2",
         "remind is listed twice"),
        (targets(0, {"within": "1bd"}), "/obligations/0/targets/0/within", "business days (bd) need a business clock"),
        (targets(1, {"when": {"grades": ["A"]}, "within": "2bd", "clock": "wall"}, {"within": "1bd"}),
         "/obligations/1/targets/0/within", "business days (bd) need a business clock"),
        (targets(2, {"within": "0m"}), "/obligations/2/targets/0/within", "more than 0 seconds and at most a year"),
        (targets(2, {"within": "367d"}), "/obligations/2/targets/0/within", "more than 0 seconds and at most a year"),
        (lambda d: d.update(hours_per_business_day=24) or targets(2, {"within": "400bd"})(d),
         "/obligations/2/targets/0/within", "at most a year"),
        # the first matching target wins: one that an earlier target always takes first is a mistake
        (targets(1, {"within": "1h"}, {"when": {"grades": ["A"]}, "within": "30m"}), "/obligations/1/targets/1/when",
         "never matches: target 0 matches every lead this one does"),
        (targets(1, {"when": {"grades": ["A"]}, "within": "1h"}, {"when": {"grades": ["A2"]}, "within": "30m"},
                 {"within": "1bd"}), "/obligations/1/targets/1/when", "target 0 matches every lead"),
        (targets(1, {"when": {"grades": ["A", "B"], "sources": ["web"]}, "within": "1h"},
                 {"when": {"grades": ["B3"], "sources": ["web"], "teams": ["team-na"]}, "within": "2h"},
                 {"within": "1bd"}), "/obligations/1/targets/1/when", "target 0"),
        (targets(1, {"when": {"sources": ["web", "event"]}, "within": "1h"},
                 {"when": {"sources": ["event"]}, "within": "2h"}), "/obligations/1/targets/1/when", "target 0"),
    ],
)  # fmt: skip
def test_check_refuses_with_a_pointer(edit: Edit, pointer: str, message: str) -> None:
    errors = check(SlaDocument.model_validate(edited(edit)))
    assert [(at, text) for at, text in errors if at == pointer and message in text], errors


@pytest.mark.parametrize(
    "edit",
    [
        # narrower first, broader after: each can match some lead
        targets(1, {"when": {"grades": ["A1"]}, "within": "10m", "clock": "wall"},
                {"when": {"grades": ["A"]}, "within": "30m", "clock": "wall"}, {"within": "1bd"}),
        targets(1, {"when": {"grades": ["A"], "sources": ["web"]}, "within": "1h"},
                {"when": {"grades": ["A"]}, "within": "2h"}),
        targets(1, {"when": {"teams": ["team-na"]}, "within": "1h"},
                {"when": {"teams": ["team-emea"]}, "within": "2h"}),
        targets(0, {"within": 90}),
        obligation(2, warn_at=None, escalation=[]),
    ],
)  # fmt: skip
def test_check_accepts(edit: Edit) -> None:
    assert check(SlaDocument.model_validate(edited(edit))) == []


GRADE_0 = ("obligations", 0, "targets", 0, "when", "grades", 0)
SOURCE_0 = ("obligations", 0, "targets", 0, "when", "sources", 0)


@pytest.mark.parametrize(
    ("edit", "location"),
    [
        (obligation(0, colour="red"), ("obligations", 0, "colour")),
        (obligation(0, name="Accept"), ("obligations", 0, "name")),
        (obligation(0, met_by=[]), ("obligations", 0, "met_by")),
        (obligation(0, met_by=["waved"]), ("obligations", 0, "met_by", 0)),
        (obligation(0, clock="lunar"), ("obligations", 0, "clock")),
        (obligation(0, warn_at=1), ("obligations", 0, "warn_at")),
        (obligation(0, warn_at=0), ("obligations", 0, "warn_at")),
        (obligation(0, escalation=["shout"]), ("obligations", 0, "escalation", 0)),
        (obligation(0, on_reassignment="forget"), ("obligations", 0, "on_reassignment")),
        (obligation(0, stages=["limbo"]), ("obligations", 0, "stages", 0)),
        (obligation(0, stages=[]), ("obligations", 0, "stages")),
        (obligation(0, targets=[]), ("obligations", 0, "targets")),
        (targets(0, {"within": "15 minutes"}), ("obligations", 0, "targets", 0, "within")),
        (targets(0, {"within": "-5m"}), ("obligations", 0, "targets", 0, "within")),
        (targets(0, {"within": True}), ("obligations", 0, "targets", 0, "within")),
        (targets(0, {"within": {"amount": 5, "unit": "fortnight"}}),
         ("obligations", 0, "targets", 0, "within", "unit")),
        (targets(0, {"when": {"grades": ["E"]}, "within": "15m"}), GRADE_0),
        (targets(0, {"when": {"grades": ["A5"]}, "within": "15m"}), GRADE_0),
        (targets(0, {"when": {"grades": ["a1"]}, "within": "15m"}), GRADE_0),
        (targets(0, {"when": {"grades": []}, "within": "15m"}), ("obligations", 0, "targets", 0, "when", "grades")),
        (targets(0, {"when": {"sources": [""]}, "within": "15m"}), SOURCE_0),
        (targets(0, {"when": {"rep": "x"}, "within": "15m"}), ("obligations", 0, "targets", 0, "when", "rep")),
        (lambda d: d.update(hours_per_business_day=25), ("hours_per_business_day",)),
        (lambda d: d.update(obligations=[]), ("obligations",)),
    ],
)  # fmt: skip
def test_structural_errors_come_from_pydantic(edit: Edit, location: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        SlaDocument.model_validate(edited(edit))
    assert [error["loc"] for error in raised.value.errors()] == [location]


def test_the_example_passes_check_and_reads_back_as_written() -> None:
    parsed = SlaDocument.model_validate(EXAMPLE)
    assert check(parsed) == []
    assert stored_document(parsed) == EXAMPLE  # windows stay `15m`, not parsed objects
    seconds = SlaDocument.model_validate(edited(targets(0, {"within": 1_000_000})))
    assert stored_document(seconds)["obligations"][0]["targets"] == [{"within": "1000000s"}]
    assert SlaDocument.model_validate(stored_document(seconds)) == seconds


def test_docs_and_the_demo_show_documents_that_pass_check() -> None:
    blocks = re.findall(r"```json\n(.*?)```", SLA_DOCS.read_text(), flags=re.S)
    documented = [yaml.safe_load(block) for block in blocks if '"obligations"' in block]
    assert documented[0] == EXAMPLE  # docs/sla.md's complete example is the one OpenAPI shows
    demo = yaml.safe_load(DEMO_SLA.read_text())
    assert set(demo) == {"kind", "note", "document"}  # the layout `leadrelay agreements import` takes
    assert demo["kind"] == "sla"
    assert check(SlaDocument.model_validate(demo["document"])) == []


def _policy(document: dict[str, Any]) -> CompiledPolicy:
    return CompiledPolicy(version="7", document=SlaDocument.model_validate(document))


TIERED = {
    "hours_per_business_day": 10,
    "obligations": [
        {
            "name": "first_touch",
            "met_by": ["contacted"],
            "targets": [
                {"when": {"grades": ["A1"]}, "within": "10m", "clock": "wall"},
                {"when": {"grades": ["A"], "sources": ["webinar"]}, "within": "20m"},
                {"when": {"grades": ["A", "B2"]}, "within": "1h"},
                {"when": {"teams": ["team-emea"]}, "within": "2h"},
                {"when": {"sources": ["web", "event"]}, "within": "1bd"},
            ],
        },
        {"name": "accept", "met_by": ["accepted"], "clock": "wall", "targets": [{"within": "15m"}]},
    ],
}


@pytest.mark.parametrize(
    ("grade", "source", "team_id", "expected"),
    [
        ("A1", "webinar", "team-na", [("first_touch", 600, SlaClock.WALL), ("accept", 900, SlaClock.WALL)]),
        ("A3", "webinar", "team-na", [("first_touch", 1200, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        ("A3", "web", None, [("first_touch", 3600, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        ("B2", "web", "team-na", [("first_touch", 3600, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        ("B1", "other", "team-emea", [("first_touch", 7200, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        ("B1", "web", "team-na", [("first_touch", 36000, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        (None, "event", "team-na", [("first_touch", 36000, SlaClock.BUSINESS), ("accept", 900, SlaClock.WALL)]),
        # no target of first_touch matches: only accept starts
        ("C4", "other", "team-na", [("accept", 900, SlaClock.WALL)]),
        (None, None, None, [("accept", 900, SlaClock.WALL)]),
    ],
)
def test_terms_for_takes_each_obligations_first_matching_target(
    grade: str | None, source: str | None, team_id: str | None, expected: list[tuple[str, float, SlaClock]]
) -> None:
    terms = _policy(TIERED).terms_for(grade=grade, source=source, team_id=team_id)
    assert [(t.obligation, t.within_seconds, t.clock) for t in terms] == expected
    assert {t.policy_version for t in terms} == {"7"}


def test_terms_carry_the_obligations_rules() -> None:
    terms = _policy(EXAMPLE).terms_for(grade="B1", source="web", team_id="team-na")
    assert terms == [
        ObligationTerms(
            obligation="accept",
            within_seconds=900,
            clock=SlaClock.WALL,
            warn_at=0.8,
            met_by=frozenset({ActivityType.ACCEPTED, ActivityType.REJECTED}),
            stages=frozenset({LeadStage.LEAD, LeadStage.MQL}),
            escalation=(EscalationStep.REMIND, EscalationStep.REASSIGN),
            on_reassignment="restart",
            policy_version="7",
        ),
        ObligationTerms(
            obligation="first_touch",
            within_seconds=4 * 3600,
            clock=SlaClock.BUSINESS,
            warn_at=0.8,
            met_by=frozenset({ActivityType.CONTACTED}),
            stages=frozenset({LeadStage.LEAD, LeadStage.MQL, LeadStage.SAL}),
            escalation=(EscalationStep.REMIND, EscalationStep.REASSIGN, EscalationStep.NOTIFY_MANAGER),
            on_reassignment="restart",
            policy_version="7",
        ),
        ObligationTerms(
            obligation="disposition",
            within_seconds=3 * 8 * 3600,  # 3bd of hours_per_business_day 8
            clock=SlaClock.BUSINESS,
            warn_at=0.8,
            met_by=frozenset({ActivityType.QUALIFIED, ActivityType.REJECTED}),
            stages=frozenset({LeadStage.LEAD, LeadStage.MQL, LeadStage.SAL}),
            escalation=(EscalationStep.NOTIFY_MANAGER,),
            on_reassignment="keep",
            policy_version="7",
        ),
    ]
    a_lead = _policy(EXAMPLE).terms_for(grade="A2", source="web", team_id="team-na")
    assert [(t.obligation, t.within_seconds, t.clock) for t in a_lead][1] == ("first_touch", 1800, SlaClock.WALL)


def test_the_builtin_policy_is_one_wall_clock_first_response_met_by_any_rep_action() -> None:
    policy = builtin_policy(first_response_seconds=300, escalation=[EscalationStep.REASSIGN])
    assert policy.version == BUILTIN_VERSION
    for grade, source, team_id in [("A1", "web", "team-na"), (None, None, None)]:
        [terms] = policy.terms_for(grade=grade, source=source, team_id=team_id)
        assert (terms.obligation, terms.within_seconds, terms.clock) == ("first_response", 300, SlaClock.WALL)
        assert terms.met_by == {activity for activity in ActivityType if not activity.is_engagement}
        assert terms.stages == set(LeadStage)
        assert (terms.warn_at, terms.escalation, terms.on_reassignment) == (0.8, (EscalationStep.REASSIGN,), "restart")


WRITER = "lr_test_sla_writer_0123456789abcdef"


@pytest.fixture
async def sla_api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sla-monitor's agreement routes in process, on the test's backend, with a key that may draft."""
    async with migrated(database_url, migrations_of("sla_monitor")) as storage:
        await _add_writer(storage)
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(agreement_router(SLA))
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://sla", headers=headers) as client:
            yield client


async def _add_writer(storage: Storage) -> None:
    async with storage.sessions() as session:
        scopes = [Scope.SLA_WRITE, Scope.SLA_READ]
        session.add(ApiKey(id="key_ops", name="ops", team=Team.OPS, scopes=scopes, key_hash=hash_key(WRITER)))
        await session.commit()


@pytest.mark.parametrize(
    ("edit", "pointers"),
    [
        (targets(0, {"within": "1bd"}), ["/document/obligations/0/targets/0/within"]),
        (targets(1, {"within": "1h"}, {"when": {"grades": ["A"]}, "within": "30m"}),
         ["/document/obligations/1/targets/1/when"]),
        (targets(1, {"when": {"grades": ["E1"]}, "within": "1h"}), ["/document/obligations/1/targets/0/when/grades/0"]),
        (targets(2, {"within": "3 days"}), ["/document/obligations/2/targets/0/within"]),
        (obligation(0, met_by=["pricing_page_viewed"]), ["/document/obligations/0/met_by/0"]),
    ],
)  # fmt: skip
async def test_a_bad_draft_is_refused_naming_the_field(
    sla_api: httpx.AsyncClient, edit: Edit, pointers: list[str]
) -> None:
    refused = await sla_api.post("/v1/sla/versions", json={"document": edited(edit), "note": "typo"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [error["pointer"] for error in refused.json()["errors"]] == pointers
    assert (await sla_api.get("/v1/sla/versions")).json() == {"versions": []}


async def test_a_good_draft_is_stored_as_written(sla_api: httpx.AsyncClient) -> None:
    drafted = await sla_api.post("/v1/sla/versions", json={"document": EXAMPLE, "note": "the example"})
    assert drafted.status_code == 201, drafted.text
    assert drafted.json()["document"] == EXAMPLE
    assert drafted.json()["status"] == "draft"


async def test_the_demo_policy_imports_as_make_run_seeds_it(sla_api: httpx.AsyncClient) -> None:
    text = DEMO_SLA.read_text(encoding="utf-8")
    imported = await sla_api.post("/v1/sla/versions:import", content=text, headers={"Content-Type": "application/yaml"})
    assert imported.status_code == 201, imported.text
    assert imported.json()["document"] == yaml.safe_load(text)["document"]
    assert imported.json()["required"] == {"all_of": ["marketing", "sales"]}
