"""The built-in team and rep, so a fresh install routes every lead before anyone configures routing."""

from leadrelay.runtime import ServiceRuntime
from router.config import RouterSettings
from router.reps import service as reps
from router.reps.crypto import channel_box
from router.reps.schemas import RepPut
from router.rules.service import DEFAULT_TEAM_ID
from router.teams import service as teams
from router.teams.schemas import TeamPut

ALL_DAY = [{"start": "00:00", "end": "24:00"}]


async def seed_defaults(runtime: ServiceRuntime[RouterSettings]) -> None:
    """Create the team `default` (UTC, open around the clock) and the rep DEFAULT_REP_ID in it, where missing.

    They are never changed once they exist: an operator may edit or deactivate them. Safe when
    replicas start at once (the loser of an insert race finds the row).
    """
    settings = runtime.settings
    async with runtime.sessions() as session:
        if await teams.get(session=session, team_id=DEFAULT_TEAM_ID) is None:
            team_in = TeamPut.model_validate(
                {
                    "name": "Default",
                    "timezone": "UTC",
                    "working_hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ALL_DAY),
                }
            )
            await teams.put(session=session, team_id=DEFAULT_TEAM_ID, team_in=team_in, actor=None)
    async with runtime.sessions() as session:
        if await reps.get(session=session, rep_id=settings.default_rep_id) is None:
            rep_in = RepPut(name="Default rep", teams=[DEFAULT_TEAM_ID])
            box = channel_box(settings.secret_key.get_secret_value())
            await reps.put(session=session, rep_id=settings.default_rep_id, rep_in=rep_in, box=box, actor=None)
