"""Settings every LeadRelay service shares; each service subclasses ServiceSettings once."""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadrelay.secrets import DEFAULT_SECRET_KEY

Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    """Environment-first settings common to all services (see docs/configuration.md)."""

    # Errors name the setting and what is wrong, never the value: a setting may be a secret.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    service_name: str = "leadrelay"
    environment: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = "sqlite+aiosqlite:///./var/leadrelay.db"
    log_level: str = "INFO"

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_idempotence: bool = False
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # 4: what the embedded broker gives a topic it creates on its own (a send retried across its
    # restart, before the services recreate the topics); any other count splits a topic's keys
    # between partitions the consumer group knows and one it does not.
    kafka_topic_partitions: int = Field(default=4, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_connect_backoff_max_seconds: float = Field(default=5.0, gt=0)
    # Each idle consumer asks the broker again every wait (the embedded broker, half of it): at 10 ms
    # the embedded broker spent 37% of a core answering the idle fetches of one stack; at 50, 11%.
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=0)
    kafka_linger_ms: int = Field(default=1, ge=0)
    broker_check_interval_seconds: float = Field(default=1.0, gt=0)

    consumer_max_retries: int = Field(default=3, ge=0)
    consumer_retry_backoff_seconds: float = Field(default=0.2, ge=0)
    consumer_batch_size: int = Field(default=200, ge=1)
    consumer_stuck_after_seconds: float = Field(default=60.0, gt=0)
    # An offset commit cost the broker and the client 0.6 ms of CPU together; committed after every
    # batch, a trickle of one-record batches paid it for every record. Redeliveries are deduplicated.
    consumer_commit_interval_seconds: float = Field(default=0.5, ge=0)
    # 0: handle what a poll returns at once (the speed-to-lead path). A consumer off that path (intake's
    # read model) waits this long for more, to handle a trickle in one transaction instead of one each.
    consumer_linger_ms: int = Field(default=0, ge=0)
    processed_event_retention_hours: float = Field(default=168.0, gt=0)

    outbox_poll_interval_seconds: float = Field(default=0.5, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    group_commit_max_batch: int = Field(default=256, ge=1)
    leader_retry_interval_seconds: float = Field(default=2.0, gt=0)

    # Allocations between two young-generation collections (Python's default: 700). With the heap
    # built at start frozen, fewer and shorter pauses of the event loop (docs/configuration.md).
    gc_young_threshold: int = Field(default=50_000, ge=0)

    # The edge every service shares (leadrelay.limits): the largest body read, and each key's rate.
    max_request_bytes: int = Field(default=1_048_576, ge=1)
    rate_limit_per_key_per_second: float = Field(default=500.0, ge=0)
    rate_limit_burst: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _heartbeat_below_session_timeout(self) -> "ServiceSettings":
        if self.kafka_heartbeat_interval_ms * 3 > self.kafka_session_timeout_ms:
            raise ValueError("KAFKA_HEARTBEAT_INTERVAL_MS must be at most a third of KAFKA_SESSION_TIMEOUT_MS")
        return self

    @property
    def consumer_group(self) -> str:
        """Kafka consumer group of this service."""
        return f"leadrelay-{self.service_name}"


class SecretKeySettings(ServiceSettings):
    """Settings of a service that encrypts secrets at rest with a key derived from LEADRELAY_SECRET_KEY."""

    secret_key: SecretStr = Field(
        default=SecretStr(DEFAULT_SECRET_KEY), validation_alias="LEADRELAY_SECRET_KEY", min_length=16
    )

    @model_validator(mode="after")
    def _no_development_secret_key_in_production(self) -> "SecretKeySettings":
        if self.environment == "production" and self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ValueError("LEADRELAY_SECRET_KEY must be set in production: the development default is refused")
        return self
