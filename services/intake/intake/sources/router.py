"""HTTP endpoints of webhook sources (scope `sources:write`); no answer holds a secret."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from intake.sources import service
from intake.sources.crypto import SecretBoxDep
from intake.sources.models import WebhookSource
from intake.sources.schemas import EXAMPLE_SOURCE_NAME, SourceList, SourcePublic, SourcePut
from leadrelay.apikeys import ApiKey, Scope, require_scopes
from leadrelay.db import SessionDep
from leadrelay.events import utcnow
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException

router = APIRouter(prefix="/v1/sources", tags=["sources"])

SourcesKey = Annotated[ApiKey, Depends(require_scopes(Scope.SOURCES_WRITE))]
SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
SourceName = Annotated[
    str,
    Path(
        pattern=SOURCE_NAME_PATTERN,
        description="Lower-case letters, digits, `-` and `_`; senders post to `/v1/webhooks/{name}`.",
        examples=[EXAMPLE_SOURCE_NAME],
    ),
]
_INSTANCE = f"/v1/sources/{EXAMPLE_SOURCE_NAME}"
_DETAILS = {403: "The API key lacks the scope(s): sources:write.", 404: f"No source named {EXAMPLE_SOURCE_NAME}."}


@router.put(
    "/{name}",
    response_model=SourcePublic,
    summary="Create or replace a webhook source",
    responses={
        201: {"description": "Created", "model": SourcePublic},
        **problem_responses(400, 401, 403, 422, 503, instance=_INSTANCE, details=_DETAILS),
    },
)
async def put_source(
    name: SourceName,
    source_in: SourcePut,
    session: SessionDep,
    box: SecretBoxDep,
    actor: SourcesKey,
    response: Response,
) -> SourcePublic:
    """Configure who may post to `/v1/webhooks/{name}`: the kind, its signing secrets and the field mapping.

    Secrets are encrypted at rest and never shown again (at most their last 4 characters).
    """
    source, created = await service.put(session, name=name, source_in=source_in, box=box, actor=actor)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return service.public(source, now=utcnow())


@router.get(
    "",
    response_model=SourceList,
    summary="List webhook sources",
    responses=problem_responses(401, 403, 503, instance="/v1/sources", details=_DETAILS),
)
async def list_sources(session: SessionDep, _key: SourcesKey) -> SourceList:
    """Every source by name; never a secret."""
    now = utcnow()
    return SourceList(sources=[service.public(source, now=now) for source in await service.get_all(session)])


@router.get(
    "/{name}",
    response_model=SourcePublic,
    summary="Read a webhook source",
    responses=problem_responses(401, 403, 404, 503, instance=_INSTANCE, details=_DETAILS),
)
async def read_source(name: SourceName, session: SessionDep, _key: SourcesKey) -> SourcePublic:
    """One source; never a secret."""
    return service.public(await _existing(session, name), now=utcnow())


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook source",
    responses=problem_responses(401, 403, 404, 503, instance=_INSTANCE, details=_DETAILS),
)
async def delete_source(name: SourceName, session: SessionDep, actor: SourcesKey) -> Response:
    """Delete a source: its webhooks are refused (401) from now on."""
    await service.delete(session, source=await _existing(session, name), actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _existing(session: SessionDep, name: str) -> WebhookSource:
    source = await service.get(session, name=name)
    if source is None:
        raise ProblemException(404, "Not Found", f"No source named {name}.")
    return source
