"""Rep logic: store a rep (secrets encrypted, audited, only when it changed), batches, the availability toggle."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from leadrelay import audit, idempotency_keys
from leadrelay.apikeys import ApiKey
from leadrelay.db import begin_writing, insert_unless_taken, is_unavailable, refusal
from leadrelay.events import utcnow
from leadrelay.idempotency_keys import Answer, IdempotentRequest
from leadrelay.problems import FieldError, item_field_errors, refused_field
from leadrelay.secrets import SecretBox
from router.reps.models import Rep
from router.reps.schemas import RepBatchItem, RepBatchResults, RepPublic, RepPut, RepResult
from router.teams.models import Team


class UnknownTeams(ValueError):
    """A rep names teams that do not exist."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{error.field}: {error.message}" for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class Stored:
    """A rep after a PUT, whether it was new, and whether it changed."""

    rep: Rep
    created: bool
    changed: bool


def _plain_channels(rep_in: RepPut) -> list[dict[str, Any]]:
    channels: list[dict[str, Any]] = []
    for channel in rep_in.channels:
        if channel.kind == "webhook":
            channels.append({"kind": "webhook", "url": str(channel.url), "secret": channel.secret})
        else:
            channels.append({"kind": "slack", "url": str(channel.url)})
    return channels


def _decrypted_channels(rep: Rep, box: SecretBox) -> list[dict[str, Any]]:
    channels: list[dict[str, Any]] = []
    for channel in rep.channels:
        if channel["kind"] == "webhook":
            channels.append({"kind": "webhook", "url": channel["url"], "secret": box.decrypt(channel["secret"])})
        else:
            channels.append({"kind": "slack", "url": box.decrypt(channel["url"])})
    return channels


def _encrypted(channels: list[dict[str, Any]], box: SecretBox) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = []
    for channel in channels:
        if channel["kind"] == "webhook":
            secret = channel["secret"]
            stored.append(
                {"kind": "webhook", "url": channel["url"], "secret": box.encrypt(secret), "secret_last4": secret[-4:]}
            )
        else:
            url = channel["url"]
            stored.append({"kind": "slack", "url": box.encrypt(url), "url_last4": url[-4:]})
    return stored


def _fields(rep_in: RepPut) -> dict[str, Any]:
    return {
        "name": rep_in.name,
        "teams": list(rep_in.teams),
        "weight": rep_in.weight,
        "daily_cap": rep_in.daily_cap,
        "weekly_cap": rep_in.weekly_cap,
        "languages": list(rep_in.languages),
        "territories": list(rep_in.territories),
        "active": rep_in.active,
        "available": rep_in.available,
        "out_of_office": [window.model_dump(mode="json") for window in rep_in.out_of_office],
        "crm_user_id": rep_in.crm_user_id,
    }


def _state(rep: Rep) -> dict[str, Any]:
    return {name: getattr(rep, name) for name in _FIELD_NAMES}


_FIELD_NAMES = (
    "name",
    "teams",
    "weight",
    "daily_cap",
    "weekly_cap",
    "languages",
    "territories",
    "active",
    "available",
    "out_of_office",
    "crm_user_id",
)


def _audit_detail(rep: Rep) -> dict[str, Any]:
    # No name, no URL, no secret: the audit log outlives the rep and is not the place for personal data.
    return {
        "teams": rep.teams,
        "weight": rep.weight,
        "daily_cap": rep.daily_cap,
        "weekly_cap": rep.weekly_cap,
        "active": rep.active,
        "available": rep.available,
        "out_of_office": len(rep.out_of_office),
        "channels": [channel["kind"] for channel in rep.channels],
        "version": rep.version,
    }


async def _missing_teams(session: AsyncSession, team_ids: list[str], *, prefix: str) -> list[FieldError]:
    if not team_ids:
        return []
    found = set((await session.exec(select(Team.id).where(col(Team.id).in_(team_ids)))).all())
    return [
        FieldError(
            field=f"{prefix}teams.{index}",
            pointer=f"/{prefix.replace('.', '/')}teams/{index}",
            message=f"no team {team_id!r}",
        )
        for index, team_id in enumerate(team_ids)
        if team_id not in found
    ]


async def _locked(session: AsyncSession, rep_id: str) -> Rep | None:
    await begin_writing(session, Rep)
    statement = select(Rep).where(Rep.id == rep_id).with_for_update().execution_options(populate_existing=True)
    return (await session.exec(statement)).first()


async def _stage_put(
    session: AsyncSession, *, rep_id: str, rep_in: RepPut, box: SecretBox, actor: ApiKey | None, prefix: str = ""
) -> Stored:
    errors = await _missing_teams(session, list(rep_in.teams), prefix=prefix)
    if errors:
        raise UnknownTeams(errors)
    fields = _fields(rep_in)
    channels = _plain_channels(rep_in)
    rep = await _locked(session, rep_id)
    if rep is None:
        now = utcnow()
        rep = Rep(id=rep_id, **fields, channels=_encrypted(channels, box), created_at=now, updated_at=now)
        if await insert_unless_taken(session, [rep]):
            audit.record(session, actor=actor, action="rep.created", target=rep_id, detail=_audit_detail(rep))
            return Stored(rep=rep, created=True, changed=True)
        rep = await _locked(session, rep_id)  # another request created it first
        assert rep is not None
    # A PUT states the channels wanted: one a 410 disabled is enabled again by naming it again.
    any_disabled = any(channel.get("disabled") for channel in rep.channels)
    if _state(rep) == fields and _decrypted_channels(rep, box) == channels and not any_disabled:
        return Stored(rep=rep, created=False, changed=False)
    rep.sqlmodel_update({**fields, "channels": _encrypted(channels, box)})
    rep.version += 1
    rep.updated_at = utcnow()
    session.add(rep)
    audit.record(session, actor=actor, action="rep.updated", target=rep_id, detail=_audit_detail(rep))
    return Stored(rep=rep, created=False, changed=True)


async def put(*, session: AsyncSession, rep_id: str, rep_in: RepPut, box: SecretBox, actor: ApiKey | None) -> Stored:
    """Store a rep's whole state and commit (audited when it changed); raises UnknownTeams."""
    try:
        stored = await _stage_put(session, rep_id=rep_id, rep_in=rep_in, box=box, actor=actor)
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return stored


async def set_availability(*, session: AsyncSession, rep: Rep, available: bool, actor: ApiKey | None) -> Rep:
    """Flip the rep's availability toggle and commit (audited when it changed)."""
    if rep.available != available:
        rep.available = available
        rep.version += 1
        rep.updated_at = utcnow()
        session.add(rep)
        audit.record(session, actor=actor, action="rep.availability", target=rep.id, detail={"available": available})
    await session.commit()
    return rep


async def get(*, session: AsyncSession, rep_id: str) -> Rep | None:
    """A rep by id."""
    return await session.get(Rep, rep_id)


async def get_all(*, session: AsyncSession) -> list[Rep]:
    """Every rep, by id."""
    return list((await session.exec(select(Rep).order_by(col(Rep.id)))).all())


def public(rep: Rep) -> RepPublic:
    """The rep as the API shows it: at most the last 4 characters of a secret or a Slack URL."""
    channels: list[dict[str, Any]] = []
    for channel in rep.channels:
        if channel["kind"] == "webhook":
            shown = {"kind": "webhook", "url": channel["url"], "secret_last4": channel["secret_last4"]}
        else:
            shown = {"kind": "slack", "url_last4": channel["url_last4"]}
        channels.append({**shown, "disabled": bool(channel.get("disabled"))})
    return RepPublic.model_validate(
        {
            **_state(rep),
            "id": rep.id,
            "channels": channels,
            "version": rep.version,
            "created_at": rep.created_at,
            "updated_at": rep.updated_at,
        }
    )


@dataclass(frozen=True)
class ItemOutcome:
    """One batch item: stored, or refused with the fields that failed."""

    rep_id: str | None
    stored: Stored | None = None
    errors: Sequence[FieldError] = field(default_factory=tuple)


def _item_errors(index: int, error: ValidationError) -> list[FieldError]:
    return item_field_errors(error, at=("reps", str(index)))


def _result(outcome: ItemOutcome) -> RepResult:
    if outcome.stored is None:
        return RepResult(id=outcome.rep_id, status=422, errors=list(outcome.errors))
    return RepResult(
        id=outcome.rep_id,
        status=201 if outcome.stored.created else 200,
        changed=outcome.stored.changed,
        rep=public(outcome.stored.rep),
    )


async def _stage_batch(
    session: AsyncSession, *, items: Sequence[Any], box: SecretBox, actor: ApiKey | None
) -> list[ItemOutcome]:
    outcomes = []
    for index, raw in enumerate(items):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        rep_id = raw_id if isinstance(raw_id, str) else None
        try:
            item = RepBatchItem.model_validate(raw)
        except ValidationError as invalid:
            outcomes.append(ItemOutcome(rep_id=rep_id, errors=_item_errors(index, invalid)))
            continue
        try:
            # A savepoint per item: a value the database refuses fails that item, not the batch.
            async with session.begin_nested():
                stored = await _stage_put(
                    session, rep_id=item.id, rep_in=item, box=box, actor=actor, prefix=f"reps.{index}."
                )
        except UnknownTeams as unknown:
            outcomes.append(ItemOutcome(rep_id=item.id, errors=unknown.errors))
            continue
        except DBAPIError as error:
            refused = refusal(error)
            if is_unavailable(error) or refused is None:
                raise
            outcomes.append(ItemOutcome(rep_id=item.id, errors=[refused_field(refused, at=("reps", str(index)))]))
            continue
        outcomes.append(ItemOutcome(rep_id=item.id, stored=stored))
    return outcomes


async def put_batch(
    *,
    session: AsyncSession,
    items: Sequence[Any],
    box: SecretBox,
    actor: ApiKey | None,
    idempotency: IdempotentRequest | None = None,
) -> Answer:
    """Store each valid item in order, in one transaction; an invalid item is refused on its own.

    The answer holds one result per item, in order; a retry with the same Idempotency-Key repeats it.
    """

    async def store(session: AsyncSession) -> Answer:
        outcomes = await _stage_batch(session, items=items, box=box, actor=actor)
        results = RepBatchResults(results=[_result(outcome) for outcome in outcomes])
        return Answer(status_code=200, body=results.model_dump(mode="json"))

    try:
        answer = await idempotency_keys.answer_once(session, request=idempotency, work=store)
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return answer
