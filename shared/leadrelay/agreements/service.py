"""The agreement lifecycle: draft, approve, reject, activate, supersede; every transition kept, published and audited.

Every change of a kind first locks the kind's head row, so the rules below are checked against
committed state, one change at a time, on SQLite and PostgreSQL alike.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from leadrelay import audit, outbox
from leadrelay.agreements.kinds import AgreementKind, DocumentError
from leadrelay.agreements.models import (
    AgreementApproval,
    AgreementHead,
    AgreementTransition,
    AgreementVersion,
    Transition,
    VersionStatus,
)
from leadrelay.apikeys import ApiKey
from leadrelay.db import upsert_insert
from leadrelay.events import (
    AgreementActivated,
    AgreementApproved,
    AgreementDrafted,
    AgreementEventData,
    AgreementRejected,
    AgreementSuperseded,
    new_event,
    utcnow,
)
from leadrelay.problems import VALIDATION_PROBLEM, FieldError, ProblemException

EVENTS: dict[Transition, type[AgreementEventData]] = {
    Transition.DRAFTED: AgreementDrafted,
    Transition.APPROVED: AgreementApproved,
    Transition.REJECTED: AgreementRejected,
    Transition.ACTIVATED: AgreementActivated,
    Transition.SUPERSEDED: AgreementSuperseded,
}


class DocumentInvalid(ProblemException):
    """422 naming each bad field by JSON pointer, in the same shape as a structurally invalid request."""

    def __init__(self, errors: Sequence[DocumentError], *, prefix: str = "/document") -> None:
        fields = [
            FieldError(field=_dotted(prefix + pointer), pointer=prefix + pointer, message=message)
            for pointer, message in errors
        ]
        super().__init__(
            422,
            "Invalid request",
            "; ".join(f"{error.field}: {error.message}" for error in fields),
            type_=VALIDATION_PROBLEM,
        )
        self.problem.errors = fields


def _dotted(pointer: str) -> str:
    tokens = pointer.lstrip("/").split("/")
    return ".".join(token.replace("~1", "/").replace("~0", "~") for token in tokens)


@dataclass(frozen=True)
class AgreementRecord:
    """A version with its approvals and history, oldest first."""

    version: AgreementVersion
    approvals: list[AgreementApproval]
    history: list[AgreementTransition]


def stored_document(document: BaseModel) -> dict[str, Any]:
    """The JSON a version keeps: what the author wrote (aliases, no unset defaults), normalised."""
    return document.model_dump(mode="json", by_alias=True, exclude_unset=True)


async def draft(
    session: AsyncSession, *, kind: AgreementKind[Any], document: BaseModel, note: str, actor: ApiKey
) -> AgreementRecord:
    """Check the document, store it as the kind's next version (a draft), record and publish; commit."""
    errors = kind.check(document)
    if not errors and kind.check_stored is not None:
        errors = await kind.check_stored(session, document)
    if errors:
        raise DocumentInvalid(errors)
    now = utcnow()
    head = await _lock_head(session, kind.name)
    head.latest_version += 1
    head.updated_at = now
    session.add(head)
    row = AgreementVersion(
        kind=kind.name,
        version=head.latest_version,
        status=VersionStatus.DRAFT,
        note=note,
        document=stored_document(document),
        required=kind.approval.as_json(),
        author_key_id=actor.id,
        author_name=actor.name,
        author_team=actor.team,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    _record(session, kind, row, Transition.DRAFTED, actor=actor, at=now)
    await session.commit()
    return await _reload(session, row)


async def approve(
    session: AsyncSession, *, kind: AgreementKind[Any], version: int, actor: ApiKey, note: str | None = None
) -> AgreementRecord:
    """Approve a draft for the key's team; activate it (or supersede it at once) when the rule is met; commit.

    A key that already approved changes nothing. The newest fully approved version is the active
    one: a version older than the active one that completes its approvals is superseded at once.
    """
    now = utcnow()
    head = await _lock_head(session, kind.name)
    row = await _existing(session, kind.name, version)
    _check_signer(kind, row, actor)
    if row.author_key_id == actor.id:
        raise ProblemException(403, "Forbidden", f"The author's own key cannot approve {kind.name} v{version}.")
    _check_open(kind, row)
    approvals = await _approvals(session, [_id(row)])
    if any(approval.key_id == actor.id for approval in approvals):
        await session.commit()
        return await _reload(session, row)
    session.add(AgreementApproval(version_id=_id(row), team=actor.team, key_id=actor.id, key_name=actor.name, at=now))
    _record(session, kind, row, Transition.APPROVED, actor=actor, at=now, reason=note)
    if kind.approval.satisfied_by({approval.team for approval in approvals} | {actor.team}):
        if head.active_version is None or row.version > head.active_version:
            await _activate(session, kind, head, row, actor=actor, at=now)
        else:
            row.status = VersionStatus.SUPERSEDED
            session.add(row)
            reason = f"v{head.active_version} is newer and already active"
            _record(session, kind, row, Transition.SUPERSEDED, actor=actor, at=now, reason=reason)
    await session.commit()
    return await _reload(session, row)


async def reject(
    session: AsyncSession, *, kind: AgreementKind[Any], version: int, actor: ApiKey, reason: str
) -> AgreementRecord:
    """Reject a draft for the key's team (its author may withdraw it so); it never activates; commit."""
    now = utcnow()
    await _lock_head(session, kind.name)
    row = await _existing(session, kind.name, version)
    _check_signer(kind, row, actor)
    _check_open(kind, row)
    row.status = VersionStatus.REJECTED
    session.add(row)
    _record(session, kind, row, Transition.REJECTED, actor=actor, at=now, reason=reason)
    await session.commit()
    return await _reload(session, row)


async def get(session: AsyncSession, *, kind: str, version: int) -> AgreementRecord | None:
    """One version with its approvals and history."""
    row = (await session.exec(_versions(kind).where(AgreementVersion.version == version))).first()
    return (await _details(session, [row]))[0] if row else None


async def get_all(session: AsyncSession, *, kind: str) -> list[AgreementRecord]:
    """Every version of a kind, newest first."""
    rows = list((await session.exec(_versions(kind).order_by(col(AgreementVersion.version).desc()))).all())
    return await _details(session, rows)


async def get_active(session: AsyncSession, *, kind: str) -> AgreementRecord | None:
    """The version in force, if any."""
    row = (await session.exec(_versions(kind).where(AgreementVersion.status == VersionStatus.ACTIVE))).first()
    return (await _details(session, [row]))[0] if row else None


async def _activate(
    session: AsyncSession,
    kind: AgreementKind[Any],
    head: AgreementHead,
    row: AgreementVersion,
    *,
    actor: ApiKey,
    at: datetime,
) -> None:
    if head.active_version is not None:
        previous = await _existing(session, kind.name, head.active_version)
        previous.status = VersionStatus.SUPERSEDED
        session.add(previous)
        reason = f"superseded by v{row.version}"
        _record(session, kind, previous, Transition.SUPERSEDED, actor=actor, at=at, reason=reason)
        await session.flush()  # the partial unique index allows one active version at any moment
    row.status = VersionStatus.ACTIVE
    row.activated_at = at
    head.active_version = row.version
    head.updated_at = at
    session.add_all([row, head])
    _record(session, kind, row, Transition.ACTIVATED, actor=actor, at=at)


def _record(
    session: AsyncSession,
    kind: AgreementKind[Any],
    row: AgreementVersion,
    action: Transition,
    *,
    actor: ApiKey,
    at: datetime,
    reason: str | None = None,
) -> None:
    """Keep a transition, publish `agreement.<action>` and audit it, all in the caller's transaction."""
    session.add(
        AgreementTransition(
            version_id=_id(row),
            action=action,
            key_id=actor.id,
            key_name=actor.name,
            team=actor.team,
            reason=reason,
            at=at,
        )
    )
    data = EVENTS[action](
        kind=row.kind,
        version=row.version,
        status=row.status,
        actor_key_id=actor.id,
        actor_name=actor.name,
        actor_team=actor.team,
        reason=reason,
        at=at,
    )
    outbox.add(session, new_event(data, source=kind.source))
    detail: dict[str, Any] = {"status": row.status.value, "team": actor.team}
    if reason:
        detail["reason"] = reason
    audit.record(
        session, actor=actor, action=f"agreement.{action.value}", target=f"{row.kind} v{row.version}", detail=detail
    )


def _check_signer(kind: AgreementKind[Any], row: AgreementVersion, actor: ApiKey) -> None:
    if actor.team not in kind.approval.teams:
        teams = ", ".join(kind.approval.teams)
        raise ProblemException(
            403, "Forbidden", f"Team {actor.team} does not sign {kind.name} agreements (signing teams: {teams})."
        )


def _check_open(kind: AgreementKind[Any], row: AgreementVersion) -> None:
    if row.status is not VersionStatus.DRAFT:
        raise ProblemException(
            409,
            "Conflict",
            f"{kind.name} v{row.version} is {row.status.value}: only a draft can be approved or rejected.",
        )


async def _lock_head(session: AsyncSession, kind: str) -> AgreementHead:
    # A write first: on SQLite it takes the database's write lock before anything is read.
    await session.exec(
        upsert_insert(session, AgreementHead)
        .values(kind=kind, latest_version=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    query = (
        select(AgreementHead)
        .where(AgreementHead.kind == kind)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(query)).one()


def _versions(kind: str) -> SelectOfScalar[AgreementVersion]:
    return select(AgreementVersion).where(AgreementVersion.kind == kind).execution_options(populate_existing=True)


async def _existing(session: AsyncSession, kind: str, version: int) -> AgreementVersion:
    row = (await session.exec(_versions(kind).where(AgreementVersion.version == version))).first()
    if row is None:
        raise ProblemException(404, "Not Found", f"No {kind} version {version}.")
    return row


def _id(row: AgreementVersion) -> int:
    assert row.id is not None, "a stored version has an id"
    return row.id


async def _approvals(session: AsyncSession, version_ids: Sequence[int]) -> list[AgreementApproval]:
    query = select(AgreementApproval).where(col(AgreementApproval.version_id).in_(version_ids))
    return list((await session.exec(query.order_by(col(AgreementApproval.id)))).all())


async def _details(session: AsyncSession, rows: Sequence[AgreementVersion]) -> list[AgreementRecord]:
    ids = [_id(row) for row in rows]
    if not ids:
        return []
    approvals = await _approvals(session, ids)
    query = select(AgreementTransition).where(col(AgreementTransition.version_id).in_(ids))
    transitions = list((await session.exec(query.order_by(col(AgreementTransition.id)))).all())
    return [
        AgreementRecord(
            version=row,
            approvals=[approval for approval in approvals if approval.version_id == row.id],
            history=[transition for transition in transitions if transition.version_id == row.id],
        )
        for row in rows
    ]


async def _reload(session: AsyncSession, row: AgreementVersion) -> AgreementRecord:
    record = await get(session, kind=row.kind, version=row.version)
    assert record is not None, "a committed version is readable"
    return record
