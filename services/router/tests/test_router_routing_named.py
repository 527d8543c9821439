"""A routing draft may name only teams and reps router knows: an unknown one is refused at its JSON pointer."""

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from leadrelay.agreements import agreement_router
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.problems import install_problem_handlers
from leadrelay.testing import migrated, migrations_of
from router.reps.models import Rep
from router.rules.document import ROUTING
from router.teams.models import Team as TeamRow

WRITER = "lr_test_routing_named_0123456789"
QUEUE = {"type": "queue", "team": "team-na"}


@pytest.fixture
async def router_api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The routing agreement routes in process, with team-na, rep-grace and rep-alan stored."""
    async with migrated(database_url, migrations_of("router")) as storage:
        async with storage.sessions() as session:
            scopes = [Scope.ROUTING_WRITE, Scope.ROUTING_READ]
            session.add(ApiKey(id="key_ops", name="ops", team=Team.OPS, scopes=scopes, key_hash=hash_key(WRITER)))
            session.add(TeamRow(id="team-na", name="NA", timezone="America/New_York"))
            session.add_all([Rep(id=rep, name=rep, teams=["team-na"]) for rep in ("rep-grace", "rep-alan")])
            await session.commit()
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(agreement_router(ROUTING))
        headers = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router",
                                     headers=headers) as client:  # fmt: skip
            yield client


def _document(*actions: dict[str, Any]) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"name": f"rule-{number}", "when": {"field": "lead.source", "equals": f"source-{number}"}, **action}
        for number, action in enumerate(actions)
    ]
    return {"rules": [*rules, {"name": "everyone_else", "when": "always", "action": QUEUE}]}


async def test_a_draft_naming_unknown_teams_or_reps_is_refused_at_each_pointer(router_api: httpx.AsyncClient) -> None:
    document = _document(
        {"action": {"type": "rep", "rep": "rep-grace"}, "otherwise": QUEUE},
        {"action": {"type": "pool", "reps": ["rep-alan", "rep-nobody"]}, "otherwise": QUEUE},
        {
            "action": {"type": "account_owner"},
            "otherwise": {"type": "rep", "rep": "rep-ghost", "otherwise": QUEUE},
        },
        {"action": {"type": "team", "team": "team-mars"}, "otherwise": {"type": "queue", "team": "team-venus"}},
    )

    refused = await router_api.post("/v1/routing/versions", json={"document": document, "note": "typos"})

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [(error["pointer"], error["message"].split(":")[0]) for error in refused.json()["errors"]] == [
        ("/document/rules/1/action/reps/1", "no rep 'rep-nobody'"),
        ("/document/rules/2/otherwise/rep", "no rep 'rep-ghost'"),
        ("/document/rules/3/action/team", "no team 'team-mars'"),
        ("/document/rules/3/otherwise/team", "no team 'team-venus'"),
    ]
    assert (await router_api.get("/v1/routing/versions")).json() == {"versions": []}


async def test_a_draft_naming_only_known_teams_and_reps_is_stored(router_api: httpx.AsyncClient) -> None:
    document = _document(
        {"action": {"type": "pool", "reps": ["rep-alan", "rep-grace"]}, "otherwise": QUEUE},
        {"action": {"type": "team", "team": "team-na"}, "otherwise": QUEUE},
    )

    drafted = await router_api.post("/v1/routing/versions", json={"document": document, "note": "fine"})

    assert drafted.status_code == 201, drafted.text
