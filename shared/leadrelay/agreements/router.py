"""`agreement_router(kind)`: the same HTTP endpoints under `/v1/{kind}/` for every kind of agreement."""

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError, create_model

from leadrelay.agreements import service, yamlio
from leadrelay.agreements.diff import diff
from leadrelay.agreements.kinds import AgreementKind, Quorum
from leadrelay.agreements.schemas import (
    ApprovalCreate,
    ApprovalPublic,
    Author,
    HistoryEntry,
    RejectionCreate,
    VersionCreate,
    VersionDiff,
    VersionImport,
    VersionList,
    VersionPublic,
)
from leadrelay.apikeys import ApiKey, require_scopes
from leadrelay.db import SessionDep
from leadrelay.openapi import problem_responses
from leadrelay.problems import PROBLEM_JSON, ProblemException

MAX_IMPORT_BYTES = 1_000_000
MALFORMED_YAML_PROBLEM = "urn:leadrelay:problem:malformed-yaml"


class YamlResponse(Response):
    """A YAML document."""

    media_type = yamlio.MEDIA_TYPE


def to_public(record: service.AgreementRecord) -> VersionPublic:
    """A stored version as the API shows it."""
    row = record.version
    teams = list(dict.fromkeys(approval.team for approval in record.approvals))
    return VersionPublic(
        kind=row.kind,
        version=row.version,
        status=row.status,
        note=row.note,
        document=row.document,
        author=Author(key_id=row.author_key_id, name=row.author_name, team=row.author_team),
        created_at=row.created_at,
        activated_at=row.activated_at,
        approvals=[
            ApprovalPublic(team=approval.team, key_id=approval.key_id, name=approval.key_name, at=approval.at)
            for approval in record.approvals
        ],
        approved_teams=teams,
        required=row.required,
        history=[
            HistoryEntry(
                action=entry.action,
                key_id=entry.key_id,
                name=entry.key_name,
                team=entry.team,
                at=entry.at,
                reason=entry.reason,
            )
            for entry in record.history
        ],
    )


def agreement_router(kind: AgreementKind[Any]) -> APIRouter:
    """The agreements API of one kind, mounted under `/v1/{kind.name}/` (see docs/agreements.md)."""
    name = kind.name
    base = f"/v1/{name}"
    router = APIRouter(prefix=base, tags=[name])
    read_key = require_scopes(*kind.read_scopes)
    write_key = require_scopes(*kind.write_scopes)
    approve_key = require_scopes(*kind.approve_scopes)
    model_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    draft_model = create_model(f"{model_name}VersionCreate", __base__=VersionCreate, document=(kind.document, ...))
    import_model = create_model(f"{model_name}VersionImport", __base__=VersionImport, document=(kind.document, ...))
    examples = _Examples(kind)

    def forbidden(scopes: tuple[str, ...]) -> dict[int, str]:
        if not scopes:
            return {}
        return {403: f"The API key lacks the scope(s): {', '.join(scopes)}."}

    def not_found(version: int = 3) -> dict[int, str]:
        return {404: f"No {name} version {version}."}

    @router.post(
        "/versions",
        status_code=status.HTTP_201_CREATED,
        response_model=VersionPublic,
        summary=f"Draft a new {kind.title} version",
        responses={
            201: {"content": {"application/json": {"example": examples.version(status="draft")}}},
            **problem_responses(
                400, 401, 403, 422, 503, instance=f"{base}/versions", details=forbidden(kind.write_scopes)
            ),
        },
    )
    async def create_version(
        body: Annotated[
            draft_model,
            Body(openapi_examples={"draft": {"summary": "A new draft", "value": examples.create()}}),
        ],
        session: SessionDep,
        actor: Annotated[ApiKey, Depends(write_key)],
    ) -> VersionPublic:
        """Store a valid document as the next version, a draft waiting for approvals.

        An invalid document (structure or meaning) answers 422 with a JSON pointer to each bad
        field, and nothing is stored.
        """
        record = await service.draft(session, kind=kind, document=body.document, note=body.note, actor=actor)
        return to_public(record)

    import_responses = problem_responses(
        400,
        401,
        403,
        413,
        415,
        422,
        503,
        instance=f"{base}/versions:import",
        details={
            **forbidden(kind.write_scopes),
            413: f"The YAML body is larger than {MAX_IMPORT_BYTES} bytes.",
            415: "Send the YAML with Content-Type: application/yaml.",
        },
    )
    import_responses[400]["content"][PROBLEM_JSON]["example"] = {
        "type": MALFORMED_YAML_PROBLEM,
        "title": "Malformed YAML",
        "status": 400,
        "detail": "The body is not valid YAML: could not find expected ':' (line 3, column 1)",
        "instance": f"{base}/versions:import",
        "errors": [],
    }

    @router.post(
        "/versions:import",
        status_code=status.HTTP_201_CREATED,
        response_model=VersionPublic,
        summary=f"Import a {kind.title} version from YAML",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {yamlio.MEDIA_TYPE: {"schema": _IMPORT_SCHEMA, "example": examples.yaml()}},
            }
        },
        responses={
            201: {"content": {"application/json": {"example": examples.version(status="draft")}}},
            **import_responses,
        },
    )
    async def import_version(
        request: Request, session: SessionDep, actor: Annotated[ApiKey, Depends(write_key)]
    ) -> VersionPublic:
        """Draft a new version from an exported YAML file (`kind`, `note`, `document`), validated like a draft."""
        loaded = await _read_yaml(request)
        if loaded.get("kind") != name:
            raise service.DocumentInvalid([("/kind", f"must be {name!r} to import here")], prefix="")
        try:
            body = import_model.model_validate(loaded)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None
        record = await service.draft(session, kind=kind, document=body.document, note=body.note, actor=actor)
        return to_public(record)

    @router.get(
        "/versions",
        response_model=VersionList,
        summary=f"List {kind.title} versions",
        responses={
            200: {"content": {"application/json": {"example": {"versions": [examples.version(status="draft")]}}}},
            **problem_responses(401, 403, 503, instance=f"{base}/versions", details=forbidden(kind.read_scopes)),
        },
    )
    async def list_versions(session: SessionDep, _key: Annotated[ApiKey, Depends(read_key)]) -> VersionList:
        """Every version, newest first, each with its document, approvals and history."""
        return VersionList(versions=[to_public(record) for record in await service.get_all(session, kind=name)])

    @router.get(
        "/active",
        response_model=VersionPublic,
        summary=f"Read the active {kind.title} version",
        responses={
            200: {"content": {"application/json": {"example": examples.version(status="active")}}},
            **problem_responses(
                401,
                403,
                404,
                503,
                instance=f"{base}/active",
                details={**forbidden(kind.read_scopes), 404: f"No {name} version is active yet."},
            ),
        },
    )
    async def read_active(session: SessionDep, _key: Annotated[ApiKey, Depends(read_key)]) -> VersionPublic:
        """The version in force."""
        record = await service.get_active(session, kind=name)
        if record is None:
            raise ProblemException(404, "Not Found", f"No {name} version is active yet.")
        return to_public(record)

    Version = Annotated[int, Path(ge=1, description="The version number (1, 2, 3, ... per kind).", examples=[3])]

    @router.get(
        "/versions/{version}",
        response_model=VersionPublic,
        summary=f"Read a {kind.title} version",
        responses={
            200: {"content": {"application/json": {"example": examples.version(status="active")}}},
            **problem_responses(
                401,
                403,
                404,
                503,
                instance=f"{base}/versions/3",
                details={**forbidden(kind.read_scopes), **not_found()},
            ),
        },
    )
    async def read_version(
        version: Version, session: SessionDep, _key: Annotated[ApiKey, Depends(read_key)]
    ) -> VersionPublic:
        """One version with its document, status, approvals and history."""
        return to_public(await _existing(session, name, version))

    @router.post(
        "/versions/{version}/approvals",
        response_model=VersionPublic,
        summary=f"Approve a {kind.title} version",
        responses={
            200: {"content": {"application/json": {"example": examples.version(status="active")}}},
            **problem_responses(
                401,
                403,
                404,
                409,
                422,
                503,
                instance=f"{base}/versions/3/approvals",
                details={
                    403: f"Team integration does not sign {name} agreements (signing teams: "
                    f"{', '.join(kind.approval.teams)}).",
                    **not_found(),
                    409: f"{name} v3 is rejected: only a draft can be approved or rejected.",
                },
            ),
        },
    )
    async def approve_version(
        version: Version,
        session: SessionDep,
        actor: Annotated[ApiKey, Depends(approve_key)],
        body: Annotated[
            ApprovalCreate,
            Body(default_factory=ApprovalCreate, openapi_examples={"approval": {"value": {"note": "Looks right."}}}),
        ],
    ) -> VersionPublic:
        """Approve for the calling key's team; the version activates when the required teams have approved.

        The body is optional. A key of a team that does not sign this kind, or the author's own
        key, is refused (403); a key approving again changes nothing; only a draft can be approved
        (409 otherwise).
        """
        record = await service.approve(session, kind=kind, version=version, actor=actor, note=body.note)
        return to_public(record)

    @router.post(
        "/versions/{version}/rejections",
        response_model=VersionPublic,
        summary=f"Reject a {kind.title} version",
        responses={
            200: {"content": {"application/json": {"example": examples.version(status="rejected")}}},
            **problem_responses(
                401,
                403,
                404,
                409,
                422,
                503,
                instance=f"{base}/versions/3/rejections",
                details={
                    403: f"Team integration does not sign {name} agreements (signing teams: "
                    f"{', '.join(kind.approval.teams)}).",
                    **not_found(),
                    409: f"{name} v3 is active: only a draft can be approved or rejected.",
                },
            ),
        },
    )
    async def reject_version(
        version: Version,
        body: RejectionCreate,
        session: SessionDep,
        actor: Annotated[ApiKey, Depends(approve_key)],
    ) -> VersionPublic:
        """Reject a draft with a reason; a rejected version never activates."""
        record = await service.reject(session, kind=kind, version=version, actor=actor, reason=body.reason)
        return to_public(record)

    @router.get(
        "/versions/{a}/diff/{b}",
        response_model=VersionDiff,
        summary=f"Compare two {kind.title} versions",
        responses={
            200: {"content": {"application/json": {"example": examples.diff()}}},
            **problem_responses(
                401,
                403,
                404,
                503,
                instance=f"{base}/versions/2/diff/3",
                details={**forbidden(kind.read_scopes), **not_found()},
            ),
        },
    )
    async def diff_versions(
        a: Annotated[int, Path(ge=1, description="The older version.", examples=[2])],
        b: Annotated[int, Path(ge=1, description="The newer version.", examples=[3])],
        session: SessionDep,
        _key: Annotated[ApiKey, Depends(read_key)],
    ) -> VersionDiff:
        """What changed from version `a`'s document to version `b`'s, path by path (JSON pointers)."""
        old, new = await _existing(session, name, a), await _existing(session, name, b)
        return VersionDiff(kind=name, from_=a, to=b, changes=diff(old.version.document, new.version.document))

    @router.get(
        "/versions/{version}/export",
        response_class=YamlResponse,
        summary=f"Export a {kind.title} version as YAML",
        responses={
            200: {"content": {yamlio.MEDIA_TYPE: {"schema": {"type": "string"}, "example": examples.yaml()}}},
            **_problems_beside_yaml(
                problem_responses(
                    401,
                    403,
                    404,
                    503,
                    instance=f"{base}/versions/3/export",
                    details={**forbidden(kind.read_scopes), **not_found()},
                )
            ),
        },
    )
    async def export_version(
        version: Version, session: SessionDep, _key: Annotated[ApiKey, Depends(read_key)]
    ) -> YamlResponse:
        """The version's kind, note and document as YAML (no version number: import gives a new draft)."""
        row = (await _existing(session, name, version)).version
        return YamlResponse(yamlio.dump(kind=row.kind, note=row.note, document=row.document))

    return router


def _problems_beside_yaml(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    # A route answering YAML would have FastAPI document its problems as YAML too; they are JSON.
    for response in responses.values():
        response.pop("model", None)
        response["content"][PROBLEM_JSON]["schema"] = {"$ref": "#/components/schemas/Problem"}
    return responses


async def _existing(session: SessionDep, kind: str, version: int) -> service.AgreementRecord:
    record = await service.get(session, kind=kind, version=version)
    if record is None:
        raise ProblemException(404, "Not Found", f"No {kind} version {version}.")
    return record


async def _read_yaml(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in yamlio.MEDIA_TYPES:
        raise ProblemException(415, "Unsupported Media Type", "Send the YAML with Content-Type: application/yaml.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            raise ProblemException(
                413, HTTPStatus(413).phrase, f"The YAML body is larger than {MAX_IMPORT_BYTES} bytes."
            )
    try:
        return yamlio.load(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProblemException(
            400, "Malformed YAML", "The body is not UTF-8 text.", type_=MALFORMED_YAML_PROBLEM
        ) from None
    except yamlio.YamlInvalid as exc:
        raise ProblemException(
            400, "Malformed YAML", f"The body is not valid YAML: {exc}", type_=MALFORMED_YAML_PROBLEM
        ) from None


_IMPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "document"],
    "properties": {
        "kind": {"type": "string", "description": "The kind this file belongs to; it must match the path."},
        "note": {"type": "string", "maxLength": 1000},
        "document": {"type": "object", "description": "The document, in the same schema as a draft's."},
    },
}


class _Examples:
    """OpenAPI examples of one kind, built from its example document."""

    def __init__(self, kind: AgreementKind[Any]) -> None:
        self.kind = kind

    def create(self) -> dict[str, Any]:
        return {"document": self.kind.example, "note": "Agreed in the Q3 pipeline review."}

    def yaml(self) -> str:
        return yamlio.dump(kind=self.kind.name, note=self.create()["note"], document=self.kind.example)

    def version(self, *, status: str) -> dict[str, Any]:
        rule = self.kind.approval
        signers = [_SIGNERS[team] for team in rule.teams]
        if status == "active":
            approvals = signers if rule.quorum is Quorum.ALL_OF else signers[:1]
        elif status == "draft" and rule.quorum is Quorum.ALL_OF:
            approvals = signers[:1]
        else:
            approvals = []
        drafted = {"action": "drafted", **_DEVELOPMENT, "at": "2026-11-27T10:00:00Z", "reason": None}
        history = [drafted, *({"action": "approved", **signer, "reason": None} for signer in approvals)]
        if status == "active":
            history.append({**history[-1], "action": "activated"})
        if status == "rejected":
            history.append({"action": "rejected", **signers[-1], "reason": "Students score as MQLs: add a penalty."})
        return {
            "kind": self.kind.name,
            "version": 3,
            "status": status,
            "note": self.create()["note"],
            "document": self.kind.example,
            "author": {key: _DEVELOPMENT[key] for key in ("key_id", "name", "team")},
            "created_at": drafted["at"],
            "activated_at": approvals[-1]["at"] if status == "active" else None,
            "approvals": approvals,
            "approved_teams": list(dict.fromkeys(signer["team"] for signer in approvals)),
            "required": rule.as_json(),
            "history": history,
        }

    def diff(self) -> dict[str, Any]:
        example = self.kind.example
        first, items = next(iter(example.items()))
        changed = {**example, first: items[1:]} if isinstance(items, list) and len(items) > 1 else {}
        changes = [change.model_dump(by_alias=True) for change in diff(example, changed)]
        return {"kind": self.kind.name, "from": 2, "to": 3, "changes": changes}


_DEVELOPMENT = {"key_id": "key_development", "name": "development", "team": "ops"}
_SIGNERS: dict[str, dict[str, str]] = {
    "marketing": {"team": "marketing", "key_id": "key_demo_marketing", "name": "demo-marketing",
                  "at": "2026-11-27T11:00:00Z"},
    "sales": {"team": "sales", "key_id": "key_demo_sales", "name": "demo-sales", "at": "2026-11-27T12:00:00Z"},
    "ops": {"team": "ops", "key_id": "key_3f9a1c2b7d4e", "name": "revops-lead", "at": "2026-11-27T13:00:00Z"},
    "integration": {"team": "integration", "key_id": "key_9b8c7d6e5f4a", "name": "crm-sync",
                    "at": "2026-11-27T14:00:00Z"},
}  # fmt: skip
