"""Intake's HTTP API in process, on the test's backend: its real routers, migrations and problem handlers."""

from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from intake.accounts.router import router as accounts_router
from intake.activities.router import router as activities_router
from intake.leads.router import router as leads_router
from leadrelay.apikeys import ApiKey, Scope, Team, hash_key
from leadrelay.problems import install_problem_handlers
from leadrelay.testing import Storage, migrated, migrations_of

CRM_KEY = "lr_test_crm_sync_0123456789abcdef"
READER_KEY = "lr_test_reader_0123456789abcdef"


@pytest.fixture
async def intake_db(database_url: str) -> AsyncIterator[Storage]:
    """Intake's schema on the test's backend."""
    async with migrated(database_url, migrations_of("intake")) as storage:
        yield storage


@pytest.fixture
async def api(intake_db: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """A client of intake's leads, activities and accounts routes, holding a CRM key (both write scopes)."""
    async with intake_db.sessions() as session:
        session.add(
            ApiKey(
                id="key_crm",
                name="crm-sync",
                team=Team.INTEGRATION,
                scopes=[Scope.ACTIVITIES_WRITE, Scope.ACCOUNTS_WRITE, Scope.LEADS_READ],
                key_hash=hash_key(CRM_KEY),
            )
        )
        session.add(
            ApiKey(
                id="key_reader",
                name="reader",
                team=Team.SALES,
                scopes=[Scope.LEADS_READ],
                key_hash=hash_key(READER_KEY),
            )
        )
        await session.commit()
    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(sessions=intake_db.sessions)
    for router in (leads_router, activities_router, accounts_router):
        app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {CRM_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://intake", headers=headers) as client:
        yield client


@pytest.fixture
def reader_headers() -> dict[str, str]:
    """Headers of a valid key that holds only `leads:read`."""
    return {"Authorization": f"Bearer {READER_KEY}"}
