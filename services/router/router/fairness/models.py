"""Stored rotations: one row per pool, one per rep in it."""

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from leadrelay.events import utcnow
from router.fairness.rotation import Member


def _big(default: int) -> Column[int]:
    return Column(BigInteger, nullable=False, default=default)


class RotationPool(SQLModel, table=True):
    """A rotation (a rule's pool or a team) and how many picks it made.

    Every pick locks this row first (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer),
    so replicas picking from one pool take turns and produce the sequence one process would.
    """

    __tablename__ = "rotation_pool"

    pool_id: str = Field(primary_key=True, max_length=100)
    picks: int = Field(default=0, sa_column=_big(0))
    updated_at: datetime = Field(default_factory=utcnow)


class RotationMember(SQLModel, table=True):
    """A rep's place in a rotation: its credit (in 1/SCALE of a lead) and when it last took part and won."""

    __tablename__ = "rotation_member"

    pool_id: str = Field(primary_key=True, max_length=100)
    rep_id: str = Field(primary_key=True, max_length=100)
    credit: int = Field(default=0, sa_column=_big(0))
    last_seen: int = Field(default=-1, sa_column=_big(-1))
    last_won: int = Field(default=-1, sa_column=_big(-1))
    waiting_since: int = Field(default=-1, sa_column=_big(-1))
    wins: int = Field(default=0, sa_column=_big(0))
    updated_at: datetime = Field(default_factory=utcnow)

    def member(self) -> Member:
        """The rep's place as the pure rotation (`fairness.rotation`) reads it."""
        return Member(
            credit=self.credit,
            last_seen=self.last_seen,
            last_won=self.last_won,
            waiting_since=self.waiting_since,
            wins=self.wins,
        )
