"""The built-in team and rep, so a fresh install routes every lead before anyone configures routing."""

from leadrelay.db import SessionFactory
from leadrelay.runtime import ServiceRuntime
from leadrelay.secrets import SecretBox
from router.config import RouterSettings
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.service import DEFAULT_TEAM_ID
from router.teams import service as teams
from router.teams.schemas import TeamPut

ALL_DAY = [{"start": "00:00", "end": "24:00"}]
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def ensure_defaults(*, sessions: SessionFactory, default_rep_id: str, box: SecretBox) -> None:
    """Create the team `default` (UTC, open around the clock) and the default rep in it, where missing.

    They are never changed once they exist: an operator may edit or deactivate them. Safe when
    replicas start at once (the loser of an insert race finds the row).
    """
    async with sessions() as session:
        if await teams.get(session=session, team_id=DEFAULT_TEAM_ID) is None:
            team_in = TeamPut.model_validate(
                {"name": "Default", "timezone": "UTC", "working_hours": dict.fromkeys(WEEK, ALL_DAY)}
            )
            await teams.put(session=session, team_id=DEFAULT_TEAM_ID, team_in=team_in, actor=None)
    async with sessions() as session:
        if await reps.get(session=session, rep_id=default_rep_id) is None:
            rep_in = RepPut(name="Default rep", teams=[DEFAULT_TEAM_ID])
            await reps.put(session=session, rep_id=default_rep_id, rep_in=rep_in, box=box, actor=None)


async def seed_defaults(runtime: ServiceRuntime[RouterSettings]) -> None:
    """At start: the built-in team and rep (see `ensure_defaults`)."""
    settings = runtime.settings
    box = channel_box(settings.secret_key.get_secret_value())
    await ensure_defaults(sessions=runtime.sessions, default_rep_id=settings.default_rep_id, box=box)
