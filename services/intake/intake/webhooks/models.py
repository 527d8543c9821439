"""The replay store: deliveries accepted in the last 72 hours, by source and delivery id."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow


class WebhookDelivery(SQLModel, table=True):
    """One accepted delivery and the leads it made; the unique key makes a replay a no-op."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("source", "delivery_key", name="uq_webhook_delivery_source_key"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    source: str = Field(max_length=100)
    delivery_key: str = Field(max_length=128)  # the sender's id, or the SHA-256 of the body
    lead_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    accepted_at: datetime = Field(default_factory=utcnow, index=True)
