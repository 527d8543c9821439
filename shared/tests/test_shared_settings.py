"""Settings validation: Kafka timings and the dev API key in production."""

import pytest
from pydantic import ValidationError

from intake.config import IntakeSettings
from leadrelay.apikeys import DEFAULT_DEV_API_KEY
from leadrelay.settings import ServiceSettings

SECRET_KEY = "lr_prod_0123456789abcdefghijkl"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment: start every test from none of the variables they use.
    for name in (
        "ENVIRONMENT",
        "LEADRELAY_DEV_API_KEY",
        "KAFKA_SESSION_TIMEOUT_MS",
        "KAFKA_HEARTBEAT_INTERVAL_MS",
        "SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def test_heartbeat_up_to_a_third_of_the_session_timeout_is_accepted() -> None:
    settings = ServiceSettings(_env_file=None, kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=1000)  # type: ignore[call-arg]
    assert settings.kafka_heartbeat_interval_ms * 3 == settings.kafka_session_timeout_ms


def test_heartbeat_above_a_third_of_the_session_timeout_is_rejected() -> None:
    with pytest.raises(ValidationError, match="KAFKA_HEARTBEAT_INTERVAL_MS"):
        ServiceSettings(_env_file=None, kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=1001)  # type: ignore[call-arg]


def test_heartbeat_check_applies_to_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", "3000")
    monkeypatch.setenv("KAFKA_HEARTBEAT_INTERVAL_MS", "2000")
    with pytest.raises(ValidationError, match="KAFKA_HEARTBEAT_INTERVAL_MS"):
        ServiceSettings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_consistent() -> None:
    settings = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka_heartbeat_interval_ms * 3 <= settings.kafka_session_timeout_ms
    assert settings.consumer_group == "leadrelay-leadrelay"
    assert ServiceSettings(_env_file=None, service_name="router").consumer_group == "leadrelay-router"  # type: ignore[call-arg]


def test_intake_refuses_the_default_dev_key_in_production_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="LEADRELAY_DEV_API_KEY"):
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("LEADRELAY_DEV_API_KEY", DEFAULT_DEV_API_KEY)
    with pytest.raises(ValidationError, match="LEADRELAY_DEV_API_KEY"):
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]


def test_intake_refuses_the_default_dev_key_in_production_from_arguments() -> None:
    with pytest.raises(ValidationError, match="LEADRELAY_DEV_API_KEY"):
        IntakeSettings(_env_file=None, environment="production")  # type: ignore[call-arg]


def test_intake_accepts_a_secret_key_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("LEADRELAY_DEV_API_KEY", SECRET_KEY)
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.environment, settings.dev_api_key) == ("production", SECRET_KEY)
    assert (
        IntakeSettings(_env_file=None, environment="production", LEADRELAY_DEV_API_KEY=SECRET_KEY).dev_api_key
        == SECRET_KEY
    )  # type: ignore[call-arg]


@pytest.mark.parametrize("environment", ["development", "test"])
def test_intake_allows_the_default_dev_key_outside_production(environment: str) -> None:
    settings = IntakeSettings(_env_file=None, environment=environment)  # type: ignore[call-arg]
    assert settings.dev_api_key == DEFAULT_DEV_API_KEY


def test_intake_rejects_a_short_dev_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADRELAY_DEV_API_KEY", "short")
    with pytest.raises(ValidationError):
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]


def test_unknown_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prod")  # a typo must not silently mean "development"
    with pytest.raises(ValidationError):
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]
