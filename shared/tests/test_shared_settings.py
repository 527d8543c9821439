"""Settings validation: Kafka timings, and key settings that never show the key."""

import pytest
from pydantic import ValidationError

from intake.config import IntakeSettings
from leadrelay.apikeys import DEFAULT_DEV_API_KEY
from leadrelay.settings import ServiceSettings

SECRET_KEY = "lr_prod_0123456789abcdefghijklmnopqrstuv"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment: start every test from none of the variables they use.
    for name in (
        "ENVIRONMENT",
        "LEADRELAY_DEV_API_KEY",
        "LEADRELAY_DEMO_MARKETING_KEY",
        "LEADRELAY_DEMO_SALES_KEY",
        "LEADRELAY_BOOTSTRAP_API_KEY",
        "LEADRELAY_SECRET_KEY",
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


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_intake_starts_with_the_default_dev_key_in_any_environment(environment: str) -> None:
    # Outside production the key is seeded; in production it is never seeded (intake revokes it).
    settings = IntakeSettings(_env_file=None, environment=environment, LEADRELAY_SECRET_KEY=SECRET_KEY)  # type: ignore[call-arg]
    assert settings.dev_api_key == DEFAULT_DEV_API_KEY


@pytest.mark.parametrize(
    ("variable", "secret"),
    [
        ("LEADRELAY_DEV_API_KEY", "short-secret"),
        ("LEADRELAY_DEMO_SALES_KEY", "tiny-secret"),
        ("LEADRELAY_BOOTSTRAP_API_KEY", "lr_bootstrap_not_long_enough"),
    ],
)
def test_a_bad_key_setting_is_named_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, secret: str
) -> None:
    monkeypatch.setenv(variable, secret)
    with pytest.raises(ValidationError) as invalid:
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    message = str(invalid.value)
    assert variable in message
    assert "at least" in message
    assert secret not in message
    assert "input_value" not in message


def test_a_bootstrap_key_is_taken_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("LEADRELAY_BOOTSTRAP_API_KEY", SECRET_KEY)
    monkeypatch.setenv("LEADRELAY_SECRET_KEY", SECRET_KEY)  # production refuses the development default
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.environment, settings.bootstrap_api_key) == ("production", SECRET_KEY)


def test_unknown_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prod")  # a typo must not silently mean "development"
    with pytest.raises(ValidationError):
        IntakeSettings(_env_file=None)  # type: ignore[call-arg]
