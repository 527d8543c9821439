"""HTTP endpoints of the key registry (scope `admin`)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from intake.keys import service
from intake.keys.schemas import EXAMPLE_KEY_ID, ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic
from leadrelay.apikeys import AdminKey, ApiKey, key_cache
from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import ProblemException

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Annotated[str, Path(max_length=40, description="The key's id.", examples=[EXAMPLE_KEY_ID])]
_ADMIN_403 = {403: "The API key lacks the scope(s): admin."}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key",
    responses=problem_responses(400, 401, 403, 422, 503, instance="/v1/keys", details=_ADMIN_403),
)
async def create_key(key_in: ApiKeyCreate, session: SessionDep, actor: AdminKey) -> ApiKeyCreated:
    """Create a key for a team with scopes; the answer holds its secret, shown this once.

    It works on every service within seconds (intake announces it on `leadrelay.apikeys`).
    """
    key, secret = await service.create(session, name=key_in.name, team=key_in.team, scopes=key_in.scopes, actor=actor)
    return ApiKeyCreated.model_validate({**ApiKeyPublic.model_validate(key).model_dump(), "key": secret})


@router.get(
    "",
    response_model=ApiKeyList,
    summary="List API keys",
    responses=problem_responses(401, 403, 503, instance="/v1/keys", details=_ADMIN_403),
)
async def list_keys(session: SessionDep, _actor: AdminKey) -> ApiKeyList:
    """Every key, newest first, with its team, scopes and revocation; never a secret."""
    return ApiKeyList(keys=[ApiKeyPublic.model_validate(key) for key in await service.get_all(session)])


@router.get(
    "/{key_id}",
    response_model=ApiKeyPublic,
    summary="Read an API key",
    responses=problem_responses(
        401,
        403,
        404,
        503,
        instance=f"/v1/keys/{EXAMPLE_KEY_ID}",
        details={**_ADMIN_403, 404: f"No key with id {EXAMPLE_KEY_ID}."},
    ),
)
async def read_key(key_id: KeyId, session: SessionDep, _actor: AdminKey) -> ApiKeyPublic:
    """One key; never its secret."""
    return ApiKeyPublic.model_validate(await _existing(session, key_id))


@router.delete(
    "/{key_id}",
    response_model=ApiKeyPublic,
    summary="Revoke an API key",
    responses=problem_responses(
        401,
        403,
        404,
        503,
        instance=f"/v1/keys/{EXAMPLE_KEY_ID}",
        details={**_ADMIN_403, 404: f"No key with id {EXAMPLE_KEY_ID}."},
    ),
)
async def revoke_key(key_id: KeyId, session: SessionDep, actor: AdminKey, request: Request) -> ApiKeyPublic:
    """Revoke a key: refused here at once, and by every other service within 10 seconds."""
    key = await service.revoke(session, key=await _existing(session, key_id), actor=actor)
    key_cache(request).clear()
    return ApiKeyPublic.model_validate(key)


async def _existing(session: SessionDep, key_id: str) -> ApiKey:
    key = await service.get(session, key_id=key_id)
    if key is None:
        raise ProblemException(404, "Not Found", f"No key with id {key_id}.")
    return key
