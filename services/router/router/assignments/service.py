"""Placeholder routing: every scored lead goes to the default rep; the routing issue replaces `choose`."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay.db import insert_unless_taken
from router.assignments.models import Assignment

PLACEHOLDER_ROUTING_VERSION = "placeholder-1"


def choose(*, default_rep_id: str) -> tuple[str, list[str], list[str]]:
    """The rep, the rule path that chose them, and the candidates considered."""
    return default_rep_id, ["default"], [default_rep_id]


async def get_by_lead(*, session: AsyncSession, lead_id: str) -> Assignment | None:
    """A lead's assignment, if any."""
    return (await session.exec(select(Assignment).where(Assignment.lead_id == lead_id))).first()


@dataclass(frozen=True)
class Decision:
    """A lead's assignment, and whether this call made it (a new assignment is announced)."""

    assignment: Assignment
    new: bool


async def assign_many(*, session: AsyncSession, lead_ids: Sequence[str], default_rep_id: str) -> list[Decision]:
    """The leads' assignments, in the order asked, existing ones read in one query and new ones inserted together.

    If another replica assigned one of these leads meanwhile, the insert fails and each lead is
    assigned on its own, where the other replica's assignment stands.
    """
    wanted = list(dict.fromkeys(lead_ids))
    existing = {
        assignment.lead_id: Decision(assignment, new=False)
        for assignment in (await session.exec(select(Assignment).where(col(Assignment.lead_id).in_(wanted)))).all()
    }
    new = {
        lead_id: Decision(_new_assignment(lead_id, default_rep_id), new=True)
        for lead_id in wanted
        if lead_id not in existing
    }
    if new and not await insert_unless_taken(session, [decision.assignment for decision in new.values()]):
        decided: dict[str, Decision] = {}
        for lead_id in wanted:
            decided[lead_id] = await _decide(session=session, lead_id=lead_id, default_rep_id=default_rep_id)
        return [decided[lead_id] for lead_id in lead_ids]
    chosen = existing | new
    return [chosen[lead_id] for lead_id in lead_ids]


def _new_assignment(lead_id: str, default_rep_id: str) -> Assignment:
    rep_id, rule_path, candidates = choose(default_rep_id=default_rep_id)
    return Assignment(
        lead_id=lead_id,
        rep_id=rep_id,
        rule_path=rule_path,
        candidates=candidates,
        routing_version=PLACEHOLDER_ROUTING_VERSION,
    )


async def assign(*, session: AsyncSession, lead_id: str, default_rep_id: str) -> Assignment:
    """The lead's assignment: the existing one, or a new one (safe when two replicas race)."""
    return (await _decide(session=session, lead_id=lead_id, default_rep_id=default_rep_id)).assignment


async def _decide(*, session: AsyncSession, lead_id: str, default_rep_id: str) -> Decision:
    existing = await get_by_lead(session=session, lead_id=lead_id)
    if existing is not None:
        return Decision(existing, new=False)
    assignment = _new_assignment(lead_id, default_rep_id)
    if not await insert_unless_taken(session, [assignment]):
        # Another replica assigned this lead between our read and our insert: theirs stands.
        winner = await get_by_lead(session=session, lead_id=lead_id)
        assert winner is not None
        return Decision(winner, new=False)
    return Decision(assignment, new=True)
