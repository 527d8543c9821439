"""Intake's settings: how many worker processes it runs by default."""

import os

import pytest

from intake.config import IntakeSettings


@pytest.fixture(autouse=True)
def no_workers_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults under test, whatever the test process's environment sets."""
    monkeypatch.delenv("INTAKE_WORKERS", raising=False)


def test_one_worker_per_core_on_postgresql() -> None:
    settings = IntakeSettings(database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/intake")
    assert settings.workers == (os.cpu_count() or 1)


def test_one_worker_on_sqlite_whose_writer_lock_a_second_process_would_only_wait_on() -> None:
    assert IntakeSettings(database_url="sqlite+aiosqlite:///./var/intake.db").workers == 1


def test_intake_workers_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_WORKERS", "3")
    assert IntakeSettings(database_url="sqlite+aiosqlite:///./var/intake.db").workers == 3
