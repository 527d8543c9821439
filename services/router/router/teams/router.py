"""HTTP endpoints of teams (`reps:write` to change, `routing:read` to read)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException
from router.teams import service
from router.teams.models import TEAM_ID_PATTERN
from router.teams.schemas import EXAMPLE_TEAM_ID, TEAM_PUBLIC_EXAMPLE, TeamList, TeamPublic, TeamPut

router = APIRouter(prefix="/v1/teams", tags=["teams"])

WriteKey = Annotated[ApiKey, Depends(require_scopes(Scope.REPS_WRITE))]
ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.ROUTING_READ))]
TeamId = Annotated[
    str,
    Path(
        pattern=TEAM_ID_PATTERN,
        description="The team's id: up to 100 letters, digits and `._:@-`.",
        examples=[EXAMPLE_TEAM_ID],
    ),
]
_INSTANCE = f"/v1/teams/{EXAMPLE_TEAM_ID}"
_WRITE = {403: "The API key lacks the scope(s): reps:write."}
_READ = {403: "The API key lacks the scope(s): routing:read.", 404: f"No team with id {EXAMPLE_TEAM_ID}."}


@router.put(
    "/{team_id}",
    response_model=TeamPublic,
    summary="Create or replace a team",
    responses={
        201: {
            "description": "The team was new: stored and announced",
            "content": {"application/json": {"example": TEAM_PUBLIC_EXAMPLE}},
            "model": TeamPublic,
        },
        **problem_responses(400, 401, 403, 422, 503, instance=_INSTANCE, details=_WRITE),
    },
)
async def put_team(
    team_id: TeamId, team_in: TeamPut, session: SessionDep, actor: WriteKey, response: Response
) -> TeamPublic:
    """Store the team's whole state: 201 if new, else 200; team.changed goes out only if something changed."""
    stored = await service.put(session=session, team_id=team_id, team_in=team_in, actor=actor)
    if stored.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/teams/{team_id}"
    return service.public(stored.team)


@router.get(
    "",
    response_model=TeamList,
    summary="List teams",
    responses=problem_responses(401, 403, 503, instance="/v1/teams", details=_READ),
)
async def list_teams(session: SessionDep, _key: ReadKey) -> TeamList:
    """Every team, by id."""
    return TeamList(teams=[service.public(team) for team in await service.get_all(session=session)])


@router.get(
    "/{team_id}",
    response_model=TeamPublic,
    summary="Read a team",
    responses=problem_responses(401, 403, 404, 422, 503, instance=_INSTANCE, details=_READ),
)
async def read_team(team_id: TeamId, session: SessionDep, _key: ReadKey) -> TeamPublic:
    """One team as last stored."""
    team = await service.get(session=session, team_id=team_id)
    if team is None:
        raise ProblemException(404, "Not Found", f"No team with id {team_id}.")
    return service.public(team)
