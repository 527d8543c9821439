"""The ICP document: what `check` refuses, at which JSON pointer, and a refused draft through scoring's HTTP API."""

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
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.problems import install_problem_handlers
from leadrelay.testing import Storage, migrated, migrations_of
from scoring.icp.document import EXAMPLE, ICP, IcpDocument, check

DEMO_ICP = Path(__file__).resolve().parents[3] / "deploy" / "demo" / "icp.yaml"

Edit = Callable[[dict[str, Any]], None]


def edited(edit: Edit) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def fit(index: int, **changes: Any) -> Edit:
    return lambda document: document["fit"][index].update(changes)


def band(index: int, **changes: Any) -> Edit:
    return lambda document: document["fit"][1]["bands"][index].update(changes)


def mql(index: int, **changes: Any) -> Edit:
    return lambda document: document["mql"]["any"][index].update(changes)


def setting(path: str, value: Any) -> Edit:
    *parents, last = path.split("/")

    def edit(document: dict[str, Any]) -> None:
        for part in parents:
            document = document[part]
        document[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "pointer", "message"),
    [
        (fit(0, field="favourite_colour"), "/fit/0/field", "unknown field 'favourite_colour'"),
        (fit(0, field="email"), "/fit/0/field", "unknown field 'email'"),
        (fit(0, field="account.secret"), "/fit/0/field", "unknown field 'account.secret'"),
        (fit(0, field="attributes."), "/fit/0/field", "unknown field 'attributes.'"),
        (fit(1, field="industry"), "/fit/1/field", "'industry' holds a text; a 'bands' test reads a number"),
        (fit(3, field="source"), "/fit/3/field", "a 'region' test reads a country"),
        (fit(9, field="company"), "/fit/9/field", "a 'flag' test reads a flag"),
        (fit(1, name="target_industry"), "/fit/1/name", "duplicate name 'target_industry'"),
        (fit(0, name="demo_requested"), "/fit/0/name", "names an engagement criterion"),
        (band(0, min=300), "/fit/1/bands/0/max", "max 199 is below min 300"),
        (band(1, min=150), "/fit/1/bands/1", "overlaps band 0 (/fit/1/bands/0)"),
        (band(3, min=10), "/fit/1/bands/3", "overlaps band 0"),
        (band(0, min=None, max=None), "/fit/1/bands/0", "give min, max or both"),
        (fit(3, regions=["EMEA", "MARS"]), "/fit/3/regions/1", "unknown region 'MARS'"),
        (fit(3, countries=["UK"]), "/fit/3/countries/0", "'UK' is not an ISO 3166-1 alpha-2 country code"),
        (fit(3, regions=[]), "/fit/3/regions", "give regions, countries or both"),
        (lambda d: d["fit"][4]["groups"][1]["words"].append("--"), "/fit/4/groups/1/words/2",
         "a keyword needs a letter or a digit"),
        (lambda d: d["disqualifiers"][0].update(name="target_industry"), "/disqualifiers/0/name",
         "also names a fit criterion"),
        (lambda d: d["disqualifiers"][1].update(field="employees"), "/disqualifiers/1/field",
         "a 'keywords' test reads a text"),
        (setting("engagement/points/meeting_booked", 10), "/engagement/points/meeting_booked", "not an engagement"),
        (setting("engagement/points/won", 10), "/engagement/points/won", "not an engagement"),
        (setting("grades/fit/B", 65), "/grades/fit/B", "must be below A (65)"),
        (setting("grades/fit/C", 50), "/grades/fit/C", "must be below B (45)"),
        (setting("grades/engagement/2", 40), "/grades/engagement/2", "must be below 1 (40)"),
        (setting("grades/engagement/3", 15), "/grades/engagement/3", "must be below 2 (15)"),
        (mql(1, fit_at_least="E"), "/mql/any/1/fit_at_least", "unknown fit grade 'E'"),
        (mql(1, engagement_at_least=5), "/mql/any/1/engagement_at_least", "unknown engagement grade"),
        (mql(2, activity="won"), "/mql/any/2/activity", "not an engagement"),
        (mql(0, within_days=7), "/mql/any/0/within_days", "only with an activity"),
        (mql(0, name="demo_request"), "/mql/any/2/name", "duplicate name 'demo_request'"),
        (setting("grades/fit/A", 200), "/mql/any/0/fit_at_least",
         "no lead can meet it: fit A needs 200 points, the fit criteria give at most 125"),
        (setting("engagement/cap", 10), "/mql/any/1/engagement_at_least",
         "no lead can meet it: engagement 2 needs 15 points, the engagement criteria give at most 10"),
        (setting("engagement/points", {}), "/mql/any/1/engagement_at_least",
         "the engagement criteria give at most 0"),
    ],
)  # fmt: skip
def test_check_refuses_with_a_pointer(edit: Edit, pointer: str, message: str) -> None:
    errors = check(IcpDocument.model_validate(edited(edit)))
    assert [(at, text) for at, text in errors if at == pointer and message in text], errors


def test_the_example_the_default_and_the_demo_icp_pass_check() -> None:
    assert check(IcpDocument.model_validate(EXAMPLE)) == []
    demo = yaml.safe_load(DEMO_ICP.read_text())
    assert set(demo) == {"kind", "note", "document"}  # the export layout `leadrelay agreements import` takes
    assert demo["kind"] == "icp"
    assert demo["document"] == EXAMPLE  # docs/icp.md and OpenAPI show what `make run` signs


def test_engagement_grade_keys_may_be_yaml_integers_and_are_stored_as_text() -> None:
    document = yaml.safe_load(yaml.safe_dump(EXAMPLE).replace("'1':", "1:").replace("'2':", "2:"))
    assert 1 in document["grades"]["engagement"]
    parsed = IcpDocument.model_validate(document)
    assert parsed.model_dump(mode="json", by_alias=True)["grades"]["engagement"] == {"1": 40, "2": 15, "3": 3}


@pytest.mark.parametrize(
    ("edit", "location"),
    [
        (fit(0, colour="red"), ("fit", 0, "colour")),  # no `in` level: the pointer names the field as written
        (fit(0, type="regex"), ("fit", 0)),
        (setting("mql/any", []), ("mql", "any")),
        (setting("engagement/half_life_days", 0), ("engagement", "half_life_days")),
        (band(0, points="many"), ("fit", 1, "bands", 0, "points")),
        (lambda d: d["disqualifiers"][1].update(words=[]), ("disqualifiers", 1, "words")),
    ],
)
def test_structural_errors_come_from_pydantic(edit: Edit, location: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        IcpDocument.model_validate(edited(edit))
    assert [error["loc"] for error in raised.value.errors()] == [location]


WRITER = "lr_test_icp_writer_0123456789"


@pytest.fixture
async def scoring_api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Scoring's ICP agreement routes in process, on the test's backend, with a key that may draft."""
    async with migrated(database_url, migrations_of("scoring")) as storage:
        await _add_writer(storage)
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(agreement_router(ICP))
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring", headers=headers) as client:
            yield client


async def _add_writer(storage: Storage) -> None:
    async with storage.sessions() as session:
        session.add(
            ApiKey(id="key_ops", name="ops", team=Team.OPS, scopes=[Scope.ICP_WRITE], key_hash=hash_key(WRITER))
        )
        await session.commit()


async def test_a_draft_that_cannot_be_evaluated_is_refused_with_the_pointer(scoring_api: httpx.AsyncClient) -> None:
    bad = edited(band(1, min=150))
    refused = await scoring_api.post("/v1/icp/versions", json={"document": bad, "note": "overlap"})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [(error["pointer"], error["message"]) for error in problem["errors"]] == [
        ("/document/fit/1/bands/1", "overlaps band 0 (/fit/1/bands/0)")
    ]
    assert (await scoring_api.get("/v1/icp/versions")).json() == {"versions": []}

    unknown = await scoring_api.post("/v1/icp/versions", json={"document": edited(fit(0, type="regex"))})
    assert (unknown.status_code, unknown.json()["errors"][0]["pointer"]) == (422, "/document/fit/0")
    too_many = await scoring_api.post("/v1/icp/versions", json={"document": edited(fit(0, points=1001))})
    assert [error["pointer"] for error in too_many.json()["errors"]] == ["/document/fit/0/points"]

    drafted = await scoring_api.post("/v1/icp/versions", json={"document": EXAMPLE, "note": "demo"})
    assert drafted.status_code == 201, drafted.text
    assert IcpDocument.model_validate(drafted.json()["document"]) == IcpDocument.model_validate(EXAMPLE)
