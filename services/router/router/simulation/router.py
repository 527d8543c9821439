"""HTTP endpoints of simulate and replay (`routing:read`): routing decisions made in memory, nothing stored."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.openapi import problem_responses
from router.context import RouterContext
from router.simulation import service
from router.simulation.schemas import Replay, Simulation, SimulationRequest

router = APIRouter(prefix="/v1/routing", tags=["routing"])

ReadKey = Annotated[ApiKey, Depends(require_scopes(Scope.ROUTING_READ))]
_READ = {403: "The API key lacks the scope(s): routing:read."}
DEFAULT_DAYS, MAX_DAYS = 30, 365


def get_context(request: Request) -> RouterContext:
    """The router context of the app serving this request."""
    context: RouterContext = request.app.state.router_context
    return context


ContextDep = Annotated[RouterContext, Depends(get_context)]


@router.post(
    "/simulate",
    response_model=Simulation,
    summary="Simulate routing leads",
    responses=problem_responses(400, 401, 403, 413, 422, 503, instance="/v1/routing/simulate", details=_READ),
)
async def simulate(
    body: Annotated[SimulationRequest, Body()], session: SessionDep, context: ContextDep, _key: ReadKey
) -> Simulation:
    """Route up to 1,000 leads as the router would now (or at `at`), under the active ruleset, a stored version or
    a draft document; answer each decision with its whole explanation.

    No side effects: the rotations start from their stored standings and move in memory only, the
    reps' loads count in memory only, nothing is stored and nothing is published. An invalid
    document answers 422 with a JSON pointer to each bad field (as drafting a version does).
    """
    at = body.at or utcnow()
    rules = await service.ruleset(session=session, rulesets=context.rulesets, document=body.document,
                                  version=body.version)  # fmt: skip
    leads = service.to_scored(body.leads, at=at)
    routings = await service.simulate(session=session, rosters=context.rosters, rules=rules, leads=leads, at=at)
    return Simulation(version=rules.version, at=at, leads=len(routings), routings=routings)


_REPLAY_INSTANCE = "/v1/routing/versions/4/replay"
_REPLAY = {**_READ, 404: "No routing version 4."}
Version = Annotated[int, Path(ge=1, description="The routing version to replay (usually a draft).", examples=[4])]


@router.post(
    "/versions/{version}/replay",
    response_model=Replay,
    summary="Replay the last days' leads under a routing version",
    responses=problem_responses(401, 403, 404, 422, 503, instance=_REPLAY_INSTANCE, details=_REPLAY),
)
async def replay(
    version: Version,
    session: SessionDep,
    context: ContextDep,
    _key: ReadKey,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="How many days back to replay.")] = DEFAULT_DAYS,
) -> Replay:
    """The leads scored in the last `days` days routed again under the version, each at its scored time, with
    today's reps and teams: load per team and per rep before (each lead's first assignment) and after, and the
    leads that would change hands.

    Nothing changes: rotations and loads start empty and live in memory only.
    """
    return await service.replay(session=session, rulesets=context.rulesets, rosters=context.rosters,
                                version=version, days=days, now=utcnow())  # fmt: skip
