"""Impact preview against a hand-computed fixture, on SQLite and PostgreSQL: numbers, flips, and nothing changed."""

from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from leadrelay.agreements import agreement_router
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.events import utcnow
from leadrelay.problems import install_problem_handlers
from leadrelay.stages import LeadStage
from leadrelay.testing import Storage, migrated, migrations_of
from scoring.icp.document import ICP
from scoring.icp.preview import CELLS
from scoring.icp.preview import router as preview_router
from scoring.scores.models import LeadEngagement, LeadScore

SECRETS = {
    "key_ops": ("lr_test_ops_0123456789abcdef", Team.OPS, [Scope.ICP_WRITE]),
    "key_marketing": ("lr_test_marketing_0123456789abcdef", Team.MARKETING, [Scope.ICP_APPROVE]),
    "key_sales": ("lr_test_sales_0123456789abcdef", Team.SALES, [Scope.ICP_APPROVE]),
    "key_reader": ("lr_test_reader_0123456789abcdef", Team.SALES, []),
}


def auth(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[key_id][0]}"}


def document(*, min_employees: int, demo_alternative: bool) -> dict[str, Any]:
    """30 fit points from `min_employees` people; 20 engagement points per demo request, no decay."""
    alternatives = [{"name": "big", "fit_at_least": "A"}]
    if demo_alternative:
        alternatives.append({"name": "demo", "activity": "demo_requested"})
    return {
        "fit": [
            {"name": "size", "type": "bands", "field": "employees", "bands": [{"min": min_employees, "points": 30}]}
        ],
        "engagement": {"points": {"demo_requested": 20}, "half_life_days": None},
        "grades": {"fit": {"A": 30, "B": 20, "C": 10}, "engagement": {"1": 20, "2": 10, "3": 5}},
        "mql": {"any": alternatives},
    }


ACTIVE = document(min_employees=100, demo_alternative=False)
DRAFT = document(min_employees=50, demo_alternative=True)

# lead id, source, employees, received days ago, engagements (activity, days ago)
LEADS = [
    ("lead-1", "webinar", 200, 1, []),  # A4 MQL under both
    ("lead-2", "webinar", 60, 2, []),  # D4 -> A4: flips on size
    ("lead-3", "ebook", 10, 3, [("demo_requested", 2)]),  # D1 -> D1, flips on the demo alternative
    ("lead-4", "ebook", 500, 40, []),  # outside 30 days
    ("lead-5", "referral", None, 5, [("email_clicked", 1)]),  # D4 under both
]


@pytest.fixture
async def scoring(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Storage]]:
    """Scoring's ICP routes and preview in process over a migrated database holding the fixture's leads."""
    async with migrated(database_url, migrations_of("scoring")) as storage:
        now = utcnow()
        async with storage.sessions() as session:
            for key_id, (secret, team, scopes) in SECRETS.items():
                session.add(ApiKey(id=key_id, name=key_id, team=team, scopes=scopes, key_hash=hash_key(secret)))
            for lead_id, source, employees, days_ago, engagements in LEADS:
                session.add(
                    LeadScore(
                        lead_id=lead_id,
                        score=0,
                        stage=LeadStage.LEAD,
                        icp_version="default",
                        source=source,
                        received_at=now - timedelta(days=days_ago),
                        facts={"employees": employees, "source": source, "attributes": {}},
                    )
                )
                for number, (activity, ago) in enumerate(engagements):
                    session.add(
                        LeadEngagement(
                            event_id=f"{lead_id}-{number}",
                            lead_id=lead_id,
                            activity=activity,
                            occurred_at=now - timedelta(days=ago),
                        )
                    )
            await session.commit()
        app = FastAPI()
        install_problem_handlers(app)
        app.state.runtime = SimpleNamespace(sessions=storage.sessions)
        app.include_router(agreement_router(ICP))
        app.include_router(preview_router)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
            yield client, storage


async def draft(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    drafted = await client.post("/v1/icp/versions", json={"document": body}, headers=auth("key_ops"))
    assert drafted.status_code == 201, drafted.text
    version: int = drafted.json()["version"]
    return version


def cells(**counts: int) -> dict[str, int]:
    return {cell: counts.get(cell, 0) for cell in CELLS}


async def test_preview_against_the_hand_computed_fixture(scoring: tuple[httpx.AsyncClient, Storage]) -> None:
    client, storage = scoring
    active = await draft(client, ACTIVE)
    for signer in ("key_marketing", "key_sales"):
        assert (await client.post(f"/v1/icp/versions/{active}/approvals", headers=auth(signer))).status_code == 200
    candidate = await draft(client, DRAFT)

    answered = await client.post(f"/v1/icp/versions/{candidate}/preview", headers=auth("key_reader"))
    assert answered.status_code == 200, answered.text
    preview = answered.json()
    assert (preview["version"], preview["compared_with"], preview["days"]) == (candidate, str(active), 30)
    assert preview["leads"] == 4
    assert preview["mql"] == {"before": 1, "after": 3}
    assert preview["grades"] == {"before": cells(A4=1, D4=2, D1=1), "after": cells(A4=2, D4=1, D1=1)}
    assert preview["sources"] == [
        {"source": "ebook", "leads": 1, "mql_before": 0, "mql_after": 1},
        {"source": "referral", "leads": 1, "mql_before": 0, "mql_after": 0},
        {"source": "webinar", "leads": 2, "mql_before": 1, "mql_after": 2},
    ]
    assert preview["flips"] == 2
    flips = {flip["lead_id"]: flip for flip in preview["sample"]}
    assert list(flips) == ["lead-2", "lead-3"]
    assert flips["lead-2"]["criteria"] == [{"criterion": "size", "before": 0, "after": 30}]
    assert (flips["lead-2"]["before"]["grade"], flips["lead-2"]["after"]["grade"]) == ("D4", "A4")
    assert flips["lead-3"]["criteria"] == []  # same points: the new `demo` alternative flips it
    assert flips["lead-3"]["after"]["mql_reason"] == "demo: fit D, engagement 1, demo_requested"
    assert flips["lead-3"]["before"]["mql_reason"] == "big: fit D below A"

    wider = (await client.post(f"/v1/icp/versions/{candidate}/preview?days=60", headers=auth("key_reader"))).json()
    assert (wider["leads"], wider["mql"], wider["flips"]) == (5, {"before": 2, "after": 4}, 2)

    # The active version previewed against itself changes nothing, and the preview stored nothing.
    same = (await client.post(f"/v1/icp/versions/{active}/preview", headers=auth("key_reader"))).json()
    assert (same["mql"], same["flips"], same["grades"]["before"]) == (
        {"before": 1, "after": 1},
        0,
        same["grades"]["after"],
    )
    async with storage.sessions() as session:
        rows = (await session.exec(select(LeadScore))).all()
    assert {(row.lead_id, row.icp_version, row.score, row.grade) for row in rows} == {
        (lead[0], "default", 0, None) for lead in LEADS
    }


async def test_preview_before_any_signed_icp_compares_with_default_and_refuses_what_it_cannot(
    scoring: tuple[httpx.AsyncClient, Storage],
) -> None:
    client, _ = scoring
    candidate = await draft(client, DRAFT)
    preview = (await client.post(f"/v1/icp/versions/{candidate}/preview", headers=auth("key_reader"))).json()
    assert (preview["compared_with"], preview["leads"]) == ("default", 4)

    missing = await client.post("/v1/icp/versions/99/preview", headers=auth("key_reader"))
    assert (missing.status_code, missing.json()["detail"]) == (404, "No icp version 99.")
    for days in (0, 366):
        refused = await client.post(f"/v1/icp/versions/{candidate}/preview?days={days}", headers=auth("key_reader"))
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "days"
    assert (await client.post(f"/v1/icp/versions/{candidate}/preview")).status_code == 401
