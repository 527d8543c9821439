"""Sources: configure, read, delete; and the secrets that verify a delivery now."""

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from intake.sources.models import WebhookSource
from intake.sources.schemas import DEFAULT_TOKEN_HEADER, SecretPublic, SourcePublic, SourcePut
from leadrelay import audit
from leadrelay.apikeys import ApiKey
from leadrelay.events import utcnow
from leadrelay.secrets import SecretBox


async def put(
    session: AsyncSession, *, name: str, source_in: SourcePut, box: SecretBox, actor: ApiKey | None
) -> tuple[WebhookSource, bool]:
    """Create or replace a source (audited, secrets encrypted) and commit; returns it and whether it is new."""
    now = utcnow()
    source = await session.get(WebhookSource, name)
    created = source is None
    if source is None:
        source = WebhookSource(name=name, kind=source_in.kind, created_at=now)
    secrets = source_in.secrets
    source.sqlmodel_update(
        {
            "kind": source_in.kind,
            "secrets": [
                {
                    "token": box.encrypt(secret.value),
                    "last4": secret.value[-4:],
                    "expires_at": secret.expires_at.isoformat() if secret.expires_at else None,
                }
                for secret in secrets
            ],
            "field_mapping": source_in.field_mapping,
            "token_header": source_in.token_header,
            "enabled": source_in.enabled,
            "updated_at": now,
        }
    )
    session.add(source)
    # Never a secret, not even its last characters: the audit log outlives rotations.
    audit.record(
        session,
        actor=actor,
        action="source.created" if created else "source.updated",
        target=name,
        detail={
            "kind": source_in.kind,
            "secrets": len(secrets),
            "field_mapping": source_in.field_mapping,
            "enabled": source_in.enabled,
        },
    )
    await session.commit()
    return source, created


async def get(session: AsyncSession, *, name: str) -> WebhookSource | None:
    """A source by name."""
    return await session.get(WebhookSource, name)


async def get_all(session: AsyncSession) -> list[WebhookSource]:
    """Every source, by name."""
    return list((await session.exec(select(WebhookSource).order_by(col(WebhookSource.name)))).all())


async def delete(session: AsyncSession, *, source: WebhookSource, actor: ApiKey) -> None:
    """Delete a source (audited) and commit: its webhooks are refused from now on."""
    await session.delete(source)
    audit.record(session, actor=actor, action="source.deleted", target=source.name, detail={"kind": source.kind})
    await session.commit()


def _expiry(secret: dict[str, str | None]) -> datetime | None:
    value = secret.get("expires_at")
    return datetime.fromisoformat(value) if value else None


def active_secrets(source: WebhookSource, *, box: SecretBox, now: datetime) -> list[str]:
    """The secrets that verify a delivery at `now`, decrypted."""
    active = []
    for secret in source.secrets:
        expires_at = _expiry(secret)
        if expires_at is not None and expires_at <= now:
            continue
        value = box.decrypt(secret["token"])
        if value is not None:
            active.append(value)
    return active


def token_header(source: WebhookSource) -> str:
    """The header a marketo source's token arrives in."""
    return source.token_header or DEFAULT_TOKEN_HEADER


def public(source: WebhookSource, *, now: datetime) -> SourcePublic:
    """The source as the API shows it: at most the last 4 characters of a secret."""
    secrets = []
    for secret in source.secrets:
        expires_at = _expiry(secret)
        secrets.append(
            SecretPublic(last4=secret["last4"], expires_at=expires_at, active=expires_at is None or expires_at > now)
        )
    return SourcePublic(
        name=source.name,
        kind=source.kind,
        url=f"/v1/webhooks/{source.name}",
        secrets=secrets,
        field_mapping=source.field_mapping,
        token_header=source.token_header,
        enabled=source.enabled,
        created_at=source.created_at,
        updated_at=source.updated_at,
    )
