"""Work tied to a transaction's commit: callbacks after it, NOTIFYs with it; neither for a savepoint or a rollback."""

from sqlmodel import select

from leadrelay.db import after_commit, notify_on_commit
from leadrelay.testing import Storage, recorded_statements


async def test_after_commit_runs_once_the_transaction_commits_not_at_a_savepoint(router_db: Storage) -> None:
    ran: list[str] = []
    async with router_db.sessions() as session:
        async with session.begin():
            after_commit(session, lambda: ran.append("first"))
            async with session.begin_nested():
                after_commit(session, lambda: ran.append("second"))
                await session.exec(select(1))
            assert ran == []  # released a savepoint: the transaction has not committed
        assert ran == ["first", "second"]
        await session.exec(select(1))
        await session.commit()
    assert ran == ["first", "second"]


async def test_after_commit_never_runs_for_a_transaction_that_rolled_back(router_db: Storage) -> None:
    ran: list[str] = []
    async with router_db.sessions() as session:
        await session.exec(select(1))
        after_commit(session, lambda: ran.append("rolled back"))
        await session.rollback()
        await session.exec(select(1))
        after_commit(session, lambda: ran.append("committed"))
        await session.commit()
    assert ran == ["committed"]


async def test_notify_on_commit_sends_each_channel_once_with_the_commit(router_db: Storage) -> None:
    async with router_db.sessions() as session:
        with recorded_statements(router_db.engine) as statements:
            async with session.begin():
                notify_on_commit(session, "leadrelay_b")
                async with session.begin_nested():
                    notify_on_commit(session, "leadrelay_a")
                    notify_on_commit(session, "leadrelay_b")
                assert not [statement for statement in statements if statement.startswith("NOTIFY")]
        notified = [statement for statement in statements if statement.startswith("NOTIFY")]
        if router_db.engine.dialect.name == "postgresql":
            assert notified == ["NOTIFY leadrelay_a", "NOTIFY leadrelay_b"]
        else:
            assert notified == []  # SQLite has no channels

        with recorded_statements(router_db.engine) as statements:
            await session.exec(select(1))
            notify_on_commit(session, "leadrelay_a")
            await session.rollback()
            await session.exec(select(1))
            await session.commit()
        assert not [statement for statement in statements if statement.startswith("NOTIFY")]
