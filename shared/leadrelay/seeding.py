"""Demo agreements `make run` seeds: drafted from a YAML file, approved by the demo keys, once.

One table (`DEMO_AGREEMENTS`) says which agreement kind is seeded on which service, from which
file, drafted by which key and approved by which keys; the next kinds (routing, sla) are rows.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from leadrelay.agreements import yamlio
from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY, DEFAULT_DEV_API_KEY

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL_SECONDS = 0.5
APPROVAL_NOTE = "Seeded for the demo by make run."


@dataclass(frozen=True)
class KeySetting:
    """A well-known key: the setting that holds its secret, and the documented default secret."""

    variable: str
    default: str

    def secret(self, settings: Mapping[str, str | None]) -> str:
        """The secret in force: the setting, or the default."""
        return settings.get(self.variable) or self.default


DEV_KEY = KeySetting("LEADRELAY_DEV_API_KEY", DEFAULT_DEV_API_KEY)
MARKETING_KEY = KeySetting("LEADRELAY_DEMO_MARKETING_KEY", DEFAULT_DEMO_MARKETING_KEY)
SALES_KEY = KeySetting("LEADRELAY_DEMO_SALES_KEY", DEFAULT_DEMO_SALES_KEY)


@dataclass(frozen=True)
class SeededAgreement:
    """An agreement `make run` seeds: its kind, owning service, YAML file, drafting key and approving keys.

    The drafter is not an approver: an author's own key may not approve its version.
    """

    kind: str
    service: str
    file: Path
    drafter: KeySetting
    approvers: tuple[KeySetting, ...]


DEMO_AGREEMENTS: tuple[SeededAgreement, ...] = (
    SeededAgreement(
        kind="icp",
        service="scoring",
        file=REPO_ROOT / "deploy" / "demo" / "icp.yaml",
        drafter=DEV_KEY,
        approvers=(MARKETING_KEY, SALES_KEY),
    ),
)


class SeedingFailed(Exception):
    """An agreement could not be seeded; the message says why (never a secret)."""


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _wait_for_keys(client: httpx.AsyncClient, *, url: str, secrets: list[str], deadline: float) -> None:
    """Until the service answers and knows every key (keys reach it from intake through the broker)."""
    pending = list(secrets)
    while pending:
        try:
            answer = await client.get(f"{url}/v1/whoami", headers=_auth(pending[0]))
            if answer.status_code == 200:
                pending.pop(0)
                continue
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() >= deadline:
            raise SeedingFailed(f"{url} did not know the demo keys in time")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


def _checked(answer: httpx.Response, action: str) -> dict[str, Any]:
    if answer.is_success:
        body: dict[str, Any] = answer.json()
        return body
    detail = answer.json().get("detail") if answer.headers.get("content-type", "").endswith("json") else None
    raise SeedingFailed(f"{action}: HTTP {answer.status_code} {detail or answer.reason_phrase}")


async def seed_agreement(
    client: httpx.AsyncClient,
    agreement: SeededAgreement,
    *,
    url: str,
    settings: Mapping[str, str | None],
    deadline: float,
) -> str:
    """Draft the file's version and approve it, unless a version is active already; what was done, in words.

    A draft left by an interrupted earlier run (same author and note) is approved instead of drafting another.
    """
    drafter = agreement.drafter.secret(settings)
    approvers = [key.secret(settings) for key in agreement.approvers]
    await _wait_for_keys(client, url=url, secrets=[drafter, *approvers], deadline=deadline)
    base = f"{url}/v1/{agreement.kind}"
    versions = _checked(await client.get(f"{base}/versions", headers=_auth(drafter)), "list versions")["versions"]
    active = next((version for version in versions if version["status"] == "active"), None)
    if active is not None:
        return f"v{active['version']} already active (left alone)"
    text = agreement.file.read_text(encoding="utf-8")
    note = yamlio.load(text).get("note")
    author = _checked(await client.get(f"{url}/v1/whoami", headers=_auth(drafter)), "whoami")["id"]
    version = next(
        (
            version
            for version in versions
            if version["status"] == "draft" and version["note"] == note and version["author"]["key_id"] == author
        ),
        None,
    )
    if version is None:
        headers = {**_auth(drafter), "Content-Type": yamlio.MEDIA_TYPE}
        version = _checked(await client.post(f"{base}/versions:import", content=text, headers=headers), "draft")
    number = version["version"]
    for secret in approvers:
        answer = await client.post(
            f"{base}/versions/{number}/approvals", json={"note": APPROVAL_NOTE}, headers=_auth(secret)
        )
        version = _checked(answer, f"approve v{number}")
    teams = ", ".join(version["approved_teams"])
    return f"v{number} {version['status']}: {agreement.file.name} approved by {teams}"


async def seed_all(
    client: httpx.AsyncClient,
    *,
    urls: Mapping[str, str],
    settings: Mapping[str, str | None],
    agreements: tuple[SeededAgreement, ...] = DEMO_AGREEMENTS,
    timeout: float = 120.0,
) -> list[str]:
    """Seed every agreement in turn; one banner line each, what was done or why not (never a secret)."""
    deadline = time.monotonic() + timeout
    lines = []
    for agreement in agreements:
        try:
            outcome = await seed_agreement(
                client, agreement, url=urls[agreement.service], settings=settings, deadline=deadline
            )
        except (SeedingFailed, httpx.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("demo agreement not seeded", extra={"kind": agreement.kind, "error": str(exc)})
            outcome = f"not seeded: {exc}"
        lines.append(f"  {agreement.kind + ' seeded':<12} {outcome}")
    return lines
