"""Leads through the service on SQLite and PostgreSQL: normalised fields, one lead per person, batches,
Idempotency-Key, paging while leads arrive."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from intake.leads import service
from intake.leads.models import Lead, TimelineEntry
from intake.leads.schemas import LeadCreate
from leadrelay import idempotency_keys
from leadrelay.batching import GroupCommitter
from leadrelay.db import create_engine, create_session_factory
from leadrelay.events import LeadActivity, LeadReceived, parse_as, utcnow
from leadrelay.idempotency_keys import IdempotencyRecord
from leadrelay.outbox import OutboxMessage
from leadrelay.problems import Problem, ProblemException
from leadrelay.stages import ActivityType, LeadStage
from leadrelay.testing import Storage, migrated, migrations_of, recorded_statements


@pytest.fixture
async def intake_db(database_url: str) -> AsyncIterator[Storage]:
    """Intake's schema on the test's backend."""
    async with migrated(database_url, migrations_of("intake")) as storage:
        yield storage


@pytest.fixture
async def writer(intake_db: Storage) -> AsyncIterator[GroupCommitter]:
    """The group committer requests share, as in a worker."""
    committer = GroupCommitter(intake_db.sessions, max_batch=64)
    yield committer
    await committer.close()


def _lead(**fields: Any) -> LeadCreate:
    return LeadCreate.model_validate({"email": "ada@example.com", **fields})


async def _leads(storage: Storage) -> list[Lead]:
    async with storage.sessions() as session:
        return list((await session.exec(select(Lead).order_by(col(Lead.received_at)))).all())


async def _received_events(storage: Storage) -> list[LeadReceived]:
    async with storage.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.event_type == "lead.received"))).all()
    return [parse_as(row.payload, LeadReceived).data for row in rows]


async def test_a_lead_is_stored_normalised_with_what_its_address_says(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    answer = await service.create(
        writer=writer,
        lead_in=_lead(
            email="  Ada.Lovelace@GMail.com ",
            first_name="  Ada\u00a0 ",
            country="united kingdom",
            phone="020 7946 0000",
            employees=250,
            annual_revenue=40_000_000,
            crm_id="00Q1",
            utm_source="newsletter",
            marketing_opt_in=True,
        ),
    )
    assert (answer.status_code, answer.body["status"]) == (202, "accepted")
    [lead] = await _leads(intake_db)
    assert (lead.id, lead.email, lead.email_domain) == (answer.body["id"], "ada.lovelace@gmail.com", "gmail.com")
    assert (lead.first_name, lead.country, lead.phone) == ("Ada", "GB", "+442079460000")
    assert (lead.email_free_mail, lead.email_disposable, lead.email_lookalike) == (True, False, False)
    [event] = await _received_events(intake_db)
    assert (event.email, event.phone, event.country, event.crm_id, event.employees) == (
        "ada.lovelace@gmail.com",
        "+442079460000",
        "GB",
        "00Q1",
        250,
    )
    assert (event.annual_revenue, event.utm_source, event.marketing_opt_in, event.email_free_mail) == (
        40_000_000,
        "newsletter",
        True,
        True,
    )


async def test_disposable_and_look_alike_addresses_are_flagged(writer: GroupCommitter, intake_db: Storage) -> None:
    await service.create(writer=writer, lead_in=_lead(email="someone@mailinator.com"))
    await service.create(writer=writer, lead_in=_lead(email="\u0430da@example.com"))  # a Cyrillic first letter
    flags = {lead.email: (lead.email_disposable, lead.email_lookalike) for lead in await _leads(intake_db)}
    assert flags == {"someone@mailinator.com": (True, False), "\u0430da@example.com": (False, True)}


async def test_a_known_email_re_engages_its_lead_and_fills_its_empty_fields(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    first = await service.create(writer=writer, lead_in=_lead(company="Analytical Engines", attributes={"a": 1}))
    again = await service.create(
        writer=writer,
        lead_in=_lead(
            email="ADA@example.com", company="Other Ltd", job_title="CTO", source="pricing", attributes={"a": 2, "b": 3}
        ),
    )
    assert again.body == {"id": first.body["id"], "status": "reengaged"}
    [lead] = await _leads(intake_db)
    assert (lead.company, lead.job_title, lead.source, lead.attributes) == (
        "Analytical Engines",
        "CTO",
        "api",
        {"a": 1, "b": 3},
    )
    assert lead.reengagement_count == 1
    assert lead.reengaged_at is not None
    assert len(await _received_events(intake_db)) == 1
    timeline = await _timeline(intake_db, lead.id)
    assert [entry.type for entry in timeline] == ["lead.received", "lead.reengaged"]
    assert timeline[1].details["filled"] == ["attributes", "job_title"]
    assert timeline[1].details["source"] == "pricing"
    async with intake_db.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.event_type == "lead.activity")
        [row] = (await session.exec(query)).all()
    engagement = parse_as(row.payload, LeadActivity)
    assert (engagement.id, engagement.data.lead_id, engagement.data.activity) == (
        timeline[1].event_id,
        lead.id,
        ActivityType.REENGAGED,
    )


async def test_a_known_crm_id_re_engages_its_lead_whatever_the_email(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    first = await service.create(writer=writer, lead_in=_lead(crm_id="00Q1"))
    again = await service.create(writer=writer, lead_in=_lead(email="ada@newjob.example", crm_id="00Q1"))
    assert again.body == {"id": first.body["id"], "status": "reengaged"}
    assert [lead.email for lead in await _leads(intake_db)] == ["ada@example.com"]


async def _timeline(storage: Storage, lead_id: str) -> list[TimelineEntry]:
    async with storage.sessions() as session:
        return await service.get_timeline(session=session, lead_id=lead_id)


async def test_one_person_at_the_same_instant_on_many_workers_gets_one_lead(intake_db: Storage) -> None:
    # Each worker has its own engine and group committer, as intake's worker processes do.
    engines = [create_engine(intake_db.url) for _ in range(6)]
    writers = [GroupCommitter(create_session_factory(engine), max_batch=64) for engine in engines]
    try:
        answers = await asyncio.gather(
            *(
                service.create(writer=writers[index % len(writers)], lead_in=_lead(email="Grace@Example.org"))
                for index in range(24)
            )
        )
    finally:
        await asyncio.gather(*(committer.close() for committer in writers))
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert len({answer.body["id"] for answer in answers}) == 1
    assert sorted(answer.body["status"] for answer in answers).count("accepted") == 1
    [lead] = await _leads(intake_db)
    assert lead.reengagement_count == 23
    assert len(await _received_events(intake_db)) == 1


async def test_a_group_commit_inserts_its_new_leads_in_one_statement(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    await service.create(writer=writer, lead_in=_lead(email="known@example.com"))
    with recorded_statements(intake_db.engine) as statements:
        # Submitted together, they share one group commit: two new people, one of them twice, and a known one.
        answers = await asyncio.gather(
            *(
                service.create(writer=writer, lead_in=_lead(email=email))
                for email in ("new-1@example.com", "known@example.com", "new-2@example.com", "new-1@example.com")
            )
        )

    # The rows of each INSERT INTO lead's VALUES: one statement for the batch's four submissions.
    inserts = [statement.count("), (") + 1 for statement in statements if statement.startswith("INSERT INTO lead (")]
    assert inserts == [4]
    assert [answer.body["status"] for answer in answers] == ["accepted", "reengaged", "accepted", "reengaged"]
    assert answers[3].body["id"] == answers[0].body["id"]  # the repeat re-engaged the lead inserted just before
    leads = {lead.email: lead for lead in await _leads(intake_db)}
    assert sorted(leads) == ["known@example.com", "new-1@example.com", "new-2@example.com"]
    assert (leads["known@example.com"].reengagement_count, leads["new-1@example.com"].reengagement_count) == (1, 1)
    assert sorted(event.email for event in await _received_events(intake_db)) == sorted(leads)


async def test_a_lead_in_a_group_commit_that_failed_is_stored_when_retried_alone(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    # The batch rolls back, then each unit runs alone: whatever the failed attempt inserted is gone,
    # so each lead, with a key or without, is inserted again.
    async def broken(_session: Any) -> None:
        raise ValueError("a unit that fails its batch")

    keyed = _key("retry-alone", {"email": "keyed@example.com"})
    answers = await asyncio.gather(
        service.create(writer=writer, lead_in=_lead(email="plain@example.com")),
        service.create(writer=writer, lead_in=_lead(email="keyed@example.com"), idempotency=keyed),
        writer.submit(broken),
        return_exceptions=True,
    )

    assert [getattr(answer, "status_code", None) for answer in answers[:2]] == [202, 202]
    assert isinstance(answers[2], ValueError)
    stored = {lead.email: lead.id for lead in await _leads(intake_db)}
    assert stored == {"plain@example.com": answers[0].body["id"], "keyed@example.com": answers[1].body["id"]}
    assert sorted(event.email for event in await _received_events(intake_db)) == sorted(stored)


async def test_a_batch_answers_each_item_in_order_and_stores_the_valid_ones(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    known = await service.create(writer=writer, lead_in=_lead())
    problem = Problem(title="Invalid lead", status=422)
    answer = await service.create_many(
        writer=writer,
        items=[
            _lead(email="grace@example.org"),
            problem,
            _lead(email="ADA@example.com"),
            _lead(email="grace@EXAMPLE.org"),
        ],
    )
    results = answer.body["results"]
    assert [(result["index"], result["status"]) for result in results] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "reengaged"),
        (3, "reengaged"),
    ]
    assert results[2]["id"] == known.body["id"]
    assert results[3]["id"] == results[0]["id"]
    assert results[1]["problem"]["status"] == 422
    assert results[1]["id"] is None
    assert len(await _leads(intake_db)) == 2


def _key(key: str, payload: Any) -> idempotency_keys.IdempotentRequest:
    request = idempotency_keys.request_of(owner="key_crm", key=key, method="POST", path="/v1/leads", payload=payload)
    assert request is not None
    return request


async def test_a_retry_with_the_same_key_answers_the_first_answer_and_changes_nothing(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    lead_in = _lead(company="Analytical Engines")
    first = await service.create(writer=writer, lead_in=lead_in, idempotency=_key("k1", lead_in.model_dump()))
    retry = await service.create(writer=writer, lead_in=lead_in, idempotency=_key("k1", lead_in.model_dump()))
    assert (retry.status_code, retry.body, retry.replayed) == (first.status_code, first.body, True)
    assert first.body["status"] == "accepted"  # not "reengaged": the retry did not run again
    [lead] = await _leads(intake_db)
    assert lead.reengagement_count == 0

    other = _lead(company="Another body")
    with pytest.raises(ProblemException) as reused:
        await service.create(writer=writer, lead_in=other, idempotency=_key("k1", other.model_dump()))
    assert reused.value.problem.status == 422
    assert "Idempotency-Key" in (reused.value.problem.detail or "")


async def test_a_key_older_than_24_hours_is_free_again(writer: GroupCommitter, intake_db: Storage) -> None:
    lead_in = _lead()
    await service.create(writer=writer, lead_in=lead_in, idempotency=_key("k1", lead_in.model_dump()))
    async with intake_db.sessions() as session:
        record = (await session.exec(select(IdempotencyRecord))).one()
        record.created_at -= idempotency_keys.WINDOW + timedelta(seconds=1)
        session.add(record)
        await session.commit()
    later = await service.create(writer=writer, lead_in=lead_in, idempotency=_key("k1", lead_in.model_dump()))
    assert (later.replayed, later.body["status"]) == (False, "reengaged")
    async with intake_db.sessions() as session:
        assert await idempotency_keys.prune(session, now=utcnow() + idempotency_keys.WINDOW + timedelta(seconds=1)) == 1


async def test_twenty_concurrent_retries_on_many_workers_store_one_lead(intake_db: Storage) -> None:
    engines = [create_engine(intake_db.url) for _ in range(4)]
    writers = [GroupCommitter(create_session_factory(engine), max_batch=64) for engine in engines]
    lead_in = _lead(email="retry@example.com")
    try:
        answers = await asyncio.gather(
            *(
                service.create(
                    writer=writers[index % len(writers)],
                    lead_in=lead_in,
                    idempotency=_key("k-20", lead_in.model_dump()),
                )
                for index in range(20)
            )
        )
    finally:
        await asyncio.gather(*(committer.close() for committer in writers))
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert {(answer.status_code, answer.body["status"]) for answer in answers} == {(202, "accepted")}
    assert len({answer.body["id"] for answer in answers}) == 1
    assert sum(not answer.replayed for answer in answers) == 1
    [lead] = await _leads(intake_db)
    assert lead.reengagement_count == 0


async def test_paging_returns_each_lead_once_while_leads_are_inserted(
    writer: GroupCommitter, intake_db: Storage
) -> None:
    for index in range(25):
        await service.create(writer=writer, lead_in=_lead(email=f"before{index}@example.com"))
    before = {lead.id for lead in await _leads(intake_db)}
    seen: list[str] = []
    after: Any = None
    inserted = 0
    while True:
        async with intake_db.sessions() as session:
            page = await service.list_leads(session=session, after=after, limit=4)
        seen.extend(lead.id for lead in page)
        if len(page) < 4:
            break
        after = (page[-1].received_at, page[-1].id)
        # Insertions and updates between pages: new leads, and a re-engagement of a lead already seen.
        await service.create(writer=writer, lead_in=_lead(email=f"during{inserted}@example.com"))
        await service.create(writer=writer, lead_in=_lead(email="before0@example.com", job_title=f"t{inserted}"))
        inserted += 1
    assert len(seen) == len(set(seen)), "a lead came twice"
    assert before <= set(seen), "a lead that existed before paging was skipped"


async def test_filters_narrow_the_list(writer: GroupCommitter, intake_db: Storage) -> None:
    await service.create(writer=writer, lead_in=_lead(email="a@example.com", source="webinar"))
    await service.create(writer=writer, lead_in=_lead(email="b@example.com", source="crm"))
    async with intake_db.sessions() as session:
        lead = (await session.exec(select(Lead).where(Lead.email == "b@example.com"))).one()
        lead.owner_rep_id = "rep-1"
        session.add(lead)
        await session.commit()
        updated_at = lead.updated_at
    async with intake_db.sessions() as session:
        by_source = await service.list_leads(session=session, source="webinar", limit=10)
        by_owner = await service.list_leads(session=session, owner_rep_id="rep-1", limit=10)
        by_stage = await service.list_leads(session=session, stage=LeadStage.MQL, limit=10)
        since = await service.list_leads(session=session, updated_since=updated_at + timedelta(seconds=1), limit=10)
    assert [lead.email for lead in by_source] == ["a@example.com"]
    assert [lead.email for lead in by_owner] == ["b@example.com"]
    assert by_stage == []
    assert since == []


async def test_the_migration_keeps_the_oldest_lead_of_each_address(database_url: str) -> None:
    # Leads from before one lead per person, with a shared address, then the new revision.
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "ab89c1ca420f")
            for index, (lead_id, email) in enumerate(
                [
                    ("00000000-0000-4000-8000-000000000002", "ada@example.com"),
                    ("00000000-0000-4000-8000-000000000001", "ada@example.com"),
                    ("00000000-0000-4000-8000-000000000003", "grace@example.org"),
                ]
            ):
                await _insert_old_lead(connection, lead_id=lead_id, email=email, minute=index)
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "head")
        async with create_session_factory(engine)() as session:
            leads = {lead.id: lead.merged_into_id for lead in (await session.exec(select(Lead))).all()}
        assert leads == {
            "00000000-0000-4000-8000-000000000002": None,
            "00000000-0000-4000-8000-000000000001": "00000000-0000-4000-8000-000000000002",
            "00000000-0000-4000-8000-000000000003": None,
        }
        writer = GroupCommitter(create_session_factory(engine), max_batch=8)
        again = await service.create(writer=writer, lead_in=_lead())
        await writer.close()
        assert again.body == {"id": "00000000-0000-4000-8000-000000000002", "status": "reengaged"}
    finally:
        await engine.dispose()


def _upgrade(connection: Any, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_of("intake")))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _insert_old_lead(connection: AsyncConnection, *, lead_id: str, email: str, minute: int) -> None:
    at = datetime(2026, 11, 1, 10, minute, tzinfo=UTC)
    values = {
        "id": lead_id,
        "email": email,
        "source": "api",
        "attributes": {},
        "stage": LeadStage.LEAD,
        "received_at": at,
        "updated_at": at,
        "redrive_count": 0,
    }
    # Only the columns the old revision has, with the model's types.
    columns = sa.inspect(Lead).columns
    old_lead = sa.table("lead", *(sa.column(column.name, column.type) for column in columns if column.name in values))
    await connection.execute(sa.insert(old_lead).values(values))


async def test_batches_re_engaging_the_same_people_in_opposite_orders_both_succeed(intake_db: Storage) -> None:
    # Row locks taken in opposite orders by two workers: PostgreSQL breaks the deadlock, the work runs again.
    people = [_lead(email=f"person{index}@example.com") for index in range(30)]
    engines = [create_engine(intake_db.url) for _ in range(2)]
    writers = [GroupCommitter(create_session_factory(engine), max_batch=64) for engine in engines]
    try:
        await service.create_many(writer=writers[0], items=people)
        for _ in range(5):
            answers = await asyncio.gather(
                service.create_many(writer=writers[0], items=people),
                service.create_many(writer=writers[1], items=people[::-1]),
            )
            assert {result["status"] for answer in answers for result in answer.body["results"]} == {"reengaged"}
    finally:
        await asyncio.gather(*(committer.close() for committer in writers))
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert {lead.reengagement_count for lead in await _leads(intake_db)} == {10}
