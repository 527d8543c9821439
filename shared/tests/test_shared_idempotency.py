"""Processed-event records on SQLite and PostgreSQL."""

from datetime import timedelta

from sqlmodel import select

from leadrelay import idempotency
from leadrelay.events import utcnow
from leadrelay.idempotency import ProcessedEvent
from leadrelay.testing import Storage


async def claim(storage: Storage, consumer: str, event_id: str) -> bool:
    async with storage.sessions() as session:
        claimed = await idempotency.claim(session, consumer=consumer, event_id=event_id)
        await session.commit()
        return claimed


async def test_claim_succeeds_once_per_consumer_and_event(router_db: Storage) -> None:
    assert await claim(router_db, "leadrelay-router", "event-1") is True
    assert await claim(router_db, "leadrelay-router", "event-1") is False
    assert await claim(router_db, "leadrelay-router", "event-2") is True
    assert await claim(router_db, "leadrelay-intake", "event-1") is True
    assert await claim(router_db, "leadrelay-intake", "event-1") is False


async def test_claim_in_the_same_transaction_twice_is_false(router_db: Storage) -> None:
    async with router_db.sessions() as session:
        assert await idempotency.claim(session, consumer="c", event_id="e") is True
        assert await idempotency.claim(session, consumer="c", event_id="e") is False
        await session.commit()


async def test_rolled_back_claim_is_forgotten(router_db: Storage) -> None:
    # A handler that fails rolls back its claim, so the retry can claim the event again.
    async with router_db.sessions() as session:
        assert await idempotency.claim(session, consumer="c", event_id="e") is True
        await session.rollback()
    assert await claim(router_db, "c", "e") is True


async def test_prune_removes_only_old_records(router_db: Storage) -> None:
    now = utcnow()
    async with router_db.sessions() as session:
        session.add(ProcessedEvent(consumer="c", event_id="ancient", processed_at=now - timedelta(days=30)))
        session.add(ProcessedEvent(consumer="d", event_id="old", processed_at=now - timedelta(days=8)))
        session.add(ProcessedEvent(consumer="c", event_id="recent", processed_at=now - timedelta(days=6)))
        session.add(ProcessedEvent(consumer="c", event_id="fresh", processed_at=now))
        await session.commit()

    async with router_db.sessions() as session:
        removed = await idempotency.prune(session, older_than=now - timedelta(days=7))
        await session.commit()
    assert removed == 2

    async with router_db.sessions() as session:
        left = (await session.exec(select(ProcessedEvent.event_id).order_by(ProcessedEvent.event_id))).all()  # type: ignore[arg-type]
    assert list(left) == ["fresh", "recent"]
    # A pruned event could be claimed again; a kept one still cannot.
    assert await claim(router_db, "c", "recent") is False
    assert await claim(router_db, "c", "ancient") is True


async def test_prune_with_nothing_old_removes_nothing(router_db: Storage) -> None:
    assert await claim(router_db, "c", "e") is True
    async with router_db.sessions() as session:
        assert await idempotency.prune(session, older_than=utcnow() - timedelta(days=1)) == 0
        await session.commit()
    assert await claim(router_db, "c", "e") is False
