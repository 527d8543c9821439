"""Concurrent re-engagements of one person, on SQLite and PostgreSQL: every attribute they bring survives."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlmodel import select

from intake.leads import service
from intake.leads.models import Lead
from intake.leads.schemas import LeadCreate
from leadrelay.batching import GroupCommitter
from leadrelay.db import create_engine, create_session_factory
from leadrelay.testing import Storage, migrated, migrations_of

WORKERS = 4
SUBMISSIONS = 24


@pytest.fixture
async def intake_db(database_url: str) -> AsyncIterator[Storage]:
    """Intake's schema on the test's backend."""
    async with migrated(database_url, migrations_of("intake")) as storage:
        yield storage


async def test_concurrent_re_engagements_of_one_person_keep_every_attribute(intake_db: Storage) -> None:
    first = GroupCommitter(intake_db.sessions, max_batch=64)
    await service.create(writer=first, lead_in=LeadCreate(email="grace@example.org", attributes={"origin": 0}))
    await first.close()
    # Each worker has its own engine and group committer, as intake's worker processes do.
    engines = [create_engine(intake_db.url) for _ in range(WORKERS)]
    writers = [GroupCommitter(create_session_factory(engine), max_batch=64) for engine in engines]
    try:
        answers = await asyncio.gather(
            *(
                service.create(
                    writer=writers[index % WORKERS],
                    lead_in=LeadCreate(
                        email="Grace@Example.org", attributes={f"key{index}": index}, company=f"Company {index}"
                    ),
                )
                for index in range(SUBMISSIONS)
            )
        )
    finally:
        await asyncio.gather(*(committer.close() for committer in writers))
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert {answer.body["status"] for answer in answers} == {"reengaged"}
    async with intake_db.sessions() as session:
        [lead] = (await session.exec(select(Lead))).all()
    assert lead.attributes == {"origin": 0, **{f"key{index}": index for index in range(SUBMISSIONS)}}
    assert lead.reengagement_count == SUBMISSIONS
    assert (lead.company or "").startswith("Company ")
