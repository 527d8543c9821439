"""What `make run` seeds: the demo teams and reps, and demo agreements drafted from YAML and approved by the demo keys.

One table (`DEMO_AGREEMENTS`) says which agreement kind is seeded on which service, from which
file, drafted by which key and approved by which keys (icp, routing, sla). An agreement
is seeded once; the demo teams and reps (deploy/demo/teams.yaml) are put on every run, each rep
with a webhook channel to the local receiver, before the routing rules that name them.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from leadrelay.agreements import yamlio
from leadrelay.apikeys import DEFAULT_DEMO_MARKETING_KEY, DEFAULT_DEMO_SALES_KEY, DEFAULT_DEV_API_KEY
from leadrelay.demo import (
    DEFAULT_RECEIVER_PORT,
    DEMO_RECEIVER_SECRET,
    RECEIVER_PORT_VARIABLE,
    RECEIVER_SECRET_VARIABLE,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "deploy" / "demo"
DEMO_ROSTER = DEMO_DIR / "teams.yaml"
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
RECEIVER_SECRET = KeySetting(RECEIVER_SECRET_VARIABLE, DEMO_RECEIVER_SECRET)


def receiver_url(settings: Mapping[str, str | None]) -> str:
    """Where `make run`'s receiver listens (LEADRELAY_RECEIVER_PORT, default 8010)."""
    return f"http://127.0.0.1:{settings.get(RECEIVER_PORT_VARIABLE) or DEFAULT_RECEIVER_PORT}"


@dataclass(frozen=True)
class SeededAgreement:
    """An agreement `make run` seeds: its kind, owning service, YAML file, drafting key and approving keys.

    The drafter is not an approver: an author's own key may not approve its version. An agreement that
    `needs_roster` names the demo teams and reps, so it waits for them and is not seeded without them.
    """

    kind: str
    service: str
    file: Path
    drafter: KeySetting
    approvers: tuple[KeySetting, ...]
    needs_roster: bool = False


DEMO_AGREEMENTS: tuple[SeededAgreement, ...] = (
    SeededAgreement(
        kind="icp",
        service="scoring",
        file=DEMO_DIR / "icp.yaml",
        drafter=DEV_KEY,
        approvers=(MARKETING_KEY, SALES_KEY),
    ),
    # Routing is approved by sales or ops; the dev key (team ops) drafts it, so sales approves.
    SeededAgreement(
        kind="routing",
        service="router",
        file=DEMO_DIR / "routing.yaml",
        drafter=DEV_KEY,
        approvers=(SALES_KEY,),
        needs_roster=True,
    ),
    # The SLA is co-signed like the ICP; its business clocks come from the teams router announces.
    SeededAgreement(
        kind="sla",
        service="sla-monitor",
        file=DEMO_DIR / "sla.yaml",
        drafter=DEV_KEY,
        approvers=(MARKETING_KEY, SALES_KEY),
    ),
)


class SeedingFailed(Exception):
    """An agreement could not be seeded; the message says why (never a secret)."""


# What a step of seeding may fail with: it is then reported in the banner, and `make run` carries on.
_FAILURES = (SeedingFailed, httpx.HTTPError, OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError)


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


async def seed_roster(
    client: httpx.AsyncClient,
    *,
    url: str,
    settings: Mapping[str, str | None],
    deadline: float,
    file: Path = DEMO_ROSTER,
) -> str:
    """Put every team of the file, then every rep (which names its teams) with a channel to the receiver; in words.

    PUT replaces, so each run leaves the demo rows as the file says, rep-default (router's built-in) included.
    """
    writer = DEV_KEY.secret(settings)
    await _wait_for_keys(client, url=url, secrets=[writer], deadline=deadline)
    roster = yaml.safe_load(await asyncio.to_thread(file.read_text, encoding="utf-8"))
    receiver, secret = receiver_url(settings), RECEIVER_SECRET.secret(settings)
    created = 0
    for team_id, team in roster["teams"].items():
        answer = await client.put(f"{url}/v1/teams/{team_id}", json=team, headers=_auth(writer))
        _checked(answer, f"put team {team_id}")
        created += answer.status_code == 201
    for rep_id, rep in roster["reps"].items():
        channel = {"kind": "webhook", "url": f"{receiver}/reps/{rep_id}", "secret": secret}
        answer = await client.put(f"{url}/v1/reps/{rep_id}", json={**rep, "channels": [channel]}, headers=_auth(writer))
        _checked(answer, f"put rep {rep_id}")
        created += answer.status_code == 201
    teams, reps = ", ".join(roster["teams"]), ", ".join(roster["reps"])
    return f"{teams}; {reps} ({created} new), each told at {receiver}/reps/<id>"


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
    roster: Path = DEMO_ROSTER,
    timeout: float = 120.0,
) -> AsyncIterator[str]:
    """Seed every agreement in turn, the teams and reps before the first that needs them; a banner line as each
    is done, what was done or why not (never a secret)."""
    deadline = time.monotonic() + timeout
    roster_seeded: bool | None = None  # not tried yet
    for agreement in agreements:
        if agreement.needs_roster and roster_seeded is None:
            try:
                outcome = await seed_roster(
                    client, url=urls["router"], settings=settings, deadline=deadline, file=roster
                )
                roster_seeded = True
            except _FAILURES as exc:
                logger.warning("demo teams and reps not seeded", extra={"error": str(exc)})
                outcome, roster_seeded = f"not seeded: {exc}", False
            yield f"  {'teams seeded':<12} {outcome}"
        if agreement.needs_roster and not roster_seeded:
            yield f"  {agreement.kind + ' seeded':<12} not seeded: it names the demo teams and reps"
            continue
        try:
            outcome = await seed_agreement(
                client, agreement, url=urls[agreement.service], settings=settings, deadline=deadline
            )
        except _FAILURES as exc:
            logger.warning("demo agreement not seeded", extra={"kind": agreement.kind, "error": str(exc)})
            outcome = f"not seeded: {exc}"
        yield f"  {agreement.kind + ' seeded':<12} {outcome}"
