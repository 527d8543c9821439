"""Sources and signed webhooks through intake's HTTP API, on SQLite and PostgreSQL.

Per kind: the platform's documented payload shapes with real signatures; valid, tampered body,
wrong secret, expired secret, rotated secret, replay, stale timestamp and wrong kind.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlmodel import col, func, select

from intake.config import IntakeSettings
from intake.leads.models import Lead, TimelineEntry
from intake.main import create_app
from intake.webhooks.models import WebhookDelivery
from leadrelay.audit import AuditEntry
from leadrelay.broker import EmbeddedBroker
from leadrelay.db import SessionFactory
from leadrelay.limits import RateLimiter
from leadrelay.testing import FAST_SETTINGS
from services.intake.tests.webhook_signing import (
    body_of,
    hubspot_v1,
    hubspot_v3,
    mautic_signed,
    pardot_form,
    segment_signed,
    standard_signed,
)

PUBLIC_URL = "https://leads.example.com"
SECRET = "hs-client-secret-0123456789abcdef"
NEW_SECRET = "hs-client-secret-NEW-9876543210fedcba"
OTHER_SECRET = "some-other-secret-0000000000000000"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_WHSEC = "whsec_c2Vjb25kLXN0YW5kYXJkLXNlY3JldC1rZXk="


@dataclass
class Intake:
    client: httpx.AsyncClient
    sessions: SessionFactory
    settings: IntakeSettings

    async def count(self, model: type[Any]) -> int:
        async with self.sessions() as session:
            return int((await session.exec(select(func.count()).select_from(model))).one())

    async def put_source(self, name: str, **config: Any) -> httpx.Response:
        return await self.client.put(f"/v1/sources/{name}", json=config, headers=self.admin)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.dev_api_key}"}


@pytest.fixture
async def intake(database_url: str, broker: EmbeddedBroker) -> AsyncIterator[Intake]:
    settings = IntakeSettings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        webhook_public_url=PUBLIC_URL,
        LEADRELAY_DEMO_SOURCES=False,  # these tests count the sources they configure
        **FAST_SETTINGS,
    )
    app = create_app(settings, CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as client,
    ):
        yield Intake(client, app.state.runtime.sessions, settings)


# --- documented payload shapes -------------------------------------------------------------------


def hubspot_batch(*emails: str, first: int = 1) -> list[dict[str, Any]]:
    """A webhook-subscription batch as HubSpot documents its events: creation, then property changes."""
    events: list[dict[str, Any]] = []
    for n, email in enumerate(emails, start=first):
        common = {"subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000, "attemptNumber": 0,
                  "objectId": 1000 + n, "changeSource": "CRM", "appId": 54321}  # fmt: skip
        events.append({**common, "eventId": 10 * n, "subscriptionType": "contact.creation", "changeFlag": "NEW"})
        events.append({**common, "eventId": 10 * n + 1, "subscriptionType": "contact.propertyChange",
                       "propertyName": "email", "propertyValue": email})  # fmt: skip
        events.append({**common, "eventId": 10 * n + 2, "subscriptionType": "contact.propertyChange",
                       "propertyName": "firstname", "propertyValue": f"Person {n}"})  # fmt: skip
    return events


def mautic_contact(email: str, contact_id: int = 47) -> dict[str, Any]:
    # Mautic's contact id is the person's identity there (mapped to crm_id): one id per person.
    return {
        "id": contact_id,
        "points": 0,
        "fields": {
            "core": {
                "email": {"id": "6", "label": "Email", "alias": "email", "type": "email", "group": "core",
                          "value": email},
                "firstname": {"id": "2", "label": "First Name", "alias": "firstname", "type": "text",
                              "group": "core", "value": "Ada"},
            },
            "all": {"id": contact_id, "email": email, "firstname": "Ada", "lastname": "Lovelace", "company": "Engines",
                    "position": "CTO", "city": "London", "points": 0},
        },
    }  # fmt: skip


def mautic_body(*emails: str) -> dict[str, Any]:
    """Mautic's batched shape: bodies keyed by event name, each an array."""
    new = [
        {"contact": mautic_contact(email, 47 + number), "timestamp": "2026-11-27T10:00:00+00:00"}
        for number, email in enumerate(emails[:-1])
    ]
    form = {
        "submission": {
            "id": 9,
            "form": {"id": 1, "name": "Contact us", "alias": "contactus"},
            "lead": mautic_contact(emails[-1], 47 + len(emails) - 1),
            "results": {"email": emails[-1], "first_name": "Ada", "message": "Call me"},
            "dateSubmitted": "2026-11-27T10:00:00+00:00",
        },
        "timestamp": "2026-11-27T10:00:01+00:00",
    }
    return {"mautic.lead_post_save_new": new, "mautic.form_on_submit": [form]}


def segment_identify(email: str, message_id: str) -> dict[str, Any]:
    """Segment's identify spec example, with this person's email."""
    return {
        "anonymousId": "507f191e810c19729de860ea",
        "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0"},
        "messageId": message_id,
        "receivedAt": "2015-02-23T22:28:55.387Z",
        "sentAt": "2015-02-23T22:28:55.111Z",
        "timestamp": "2015-02-23T22:28:55.111Z",
        "traits": {"name": "Peter Gibbons", "email": email, "plan": "premium", "logins": 5},
        "type": "identify",
        "userId": "97980cfea0067",
        "version": "1.1",
    }


def standard_payload(email: str) -> dict[str, Any]:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    return {
        "type": "contact.created",
        "timestamp": "2022-11-03T20:26:10.344522Z",
        "data": {"email": email, "first_name": "Ada", "company": "Engines", "utm_source": "zapier"},
    }


# --- one scenario per kind -----------------------------------------------------------------------


@dataclass
class KindCase:
    kind: str
    secret: str
    new_secret: str
    # (secret, emails, unique) -> (url suffix, body, headers); `unique` makes a new delivery
    send: Callable[[str, list[str], int], tuple[str, bytes, dict[str, str]]]
    extra: dict[str, Any]
    stale: Callable[[str], tuple[str, bytes, dict[str, str]]] | None = None


def _hubspot(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    body = body_of([*hubspot_batch(*emails), {"eventId": unique, "subscriptionType": "company.creation"}])
    return "", body, hubspot_v3(secret, body, uri=f"{PUBLIC_URL}/v1/webhooks/src")


def _hubspot_stale(secret: str) -> tuple[str, bytes, dict[str, str]]:
    body = body_of(hubspot_batch("stale@example.com"))
    old = int((time.time() - 301) * 1000)
    return "", body, hubspot_v3(secret, body, uri=f"{PUBLIC_URL}/v1/webhooks/src", timestamp_ms=old)


def _mautic(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    body = mautic_body(*emails)
    body["mautic.form_on_submit"][0]["submission"]["id"] = unique
    raw = body_of(body)
    return "", raw, mautic_signed(secret, raw)


def _segment(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    raw = body_of(segment_identify(emails[0], f"022bb90c-bbac-11e4-8dfc-{unique:012d}"))
    return "", raw, segment_signed(secret, raw)


def _marketo(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    raw = body_of([{"email": email, "firstName": "Ada", "leadId": unique + n} for n, email in enumerate(emails)])
    return "", raw, {"Content-Type": "application/json", "X-Marketo-Token": secret}


def _pardot(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    raw = pardot_form({"email": emails[0], "first_name": "Ada", "company": "Engines", "form_id": str(unique)})
    return f"?token={secret}", raw, {"Content-Type": "application/x-www-form-urlencoded"}


def _standard(secret: str, emails: list[str], unique: int) -> tuple[str, bytes, dict[str, str]]:
    raw = body_of(standard_payload(emails[0]))
    return "", raw, standard_signed(secret, raw, msg_id=f"msg_{unique}")


def _standard_stale(secret: str) -> tuple[str, bytes, dict[str, str]]:
    raw = body_of(standard_payload("stale@example.com"))
    return "", raw, standard_signed(secret, raw, msg_id="msg_stale", timestamp=time.time() - 301)


CASES = {
    "hubspot": KindCase("hubspot", SECRET, NEW_SECRET, _hubspot, {}, _hubspot_stale),
    "mautic": KindCase("mautic", SECRET, NEW_SECRET, _mautic, {}),
    "segment": KindCase("segment", SECRET, NEW_SECRET, _segment, {}),
    "marketo": KindCase("marketo", SECRET, NEW_SECRET, _marketo, {"token_header": "X-Marketo-Token"}),
    "pardot": KindCase("pardot", SECRET, NEW_SECRET, _pardot, {}),
    "standard": KindCase("standard", WHSEC, NEW_WHSEC, _standard, {}, _standard_stale),
}
MANY = {"hubspot", "mautic", "marketo"}
TOKEN_KINDS = {"marketo", "pardot"}  # kinds whose one delivery carries several leads


async def _post(intake: Intake, delivery: tuple[str, bytes, dict[str, str]], name: str = "src") -> httpx.Response:
    suffix, body, headers = delivery
    return await intake.client.post(f"/v1/webhooks/{name}{suffix}", content=body, headers=headers)


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_each_kind_verifies_rotates_expires_and_refuses_replays(intake: Intake, kind: str) -> None:
    case = CASES[kind]
    assert (await intake.put_source("src", kind=kind, secrets=[case.secret], **case.extra)).status_code == 201
    emails = ["ada@example.com", "grace@example.com", "edsger@example.com"] if kind in MANY else ["ada@example.com"]

    # Valid: every record is a lead, stored with its lead.received, answered 202 with the ids.
    first = case.send(case.secret, emails, 1)
    accepted = await _post(intake, first)
    assert accepted.status_code == 202, accepted.text
    lead_ids = accepted.json()["lead_ids"]
    assert len(lead_ids) == len(emails)
    async with intake.sessions() as session:
        leads = {lead.id: lead for lead in (await session.exec(select(Lead))).all()}
    assert sorted(leads[lead_id].email for lead_id in lead_ids) == sorted(emails)
    assert {lead.source for lead in leads.values()} == {"src"}

    # Replay of the same delivery: 2xx, the same ids, nothing new.
    before = (await intake.count(Lead), await intake.count(TimelineEntry))
    replayed = await _post(intake, first)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"lead_ids": lead_ids}
    assert (await intake.count(Lead), await intake.count(TimelineEntry)) == before

    async def refused(delivery: tuple[str, bytes, dict[str, str]], name: str = "src") -> None:
        answer = await _post(intake, delivery, name)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert (await intake.count(Lead), await intake.count(TimelineEntry)) == before

    # Tampered body (the signature of another body); marketo and pardot send a token, not a signature.
    if kind not in TOKEN_KINDS:
        suffix, body, headers = case.send(case.secret, ["eve@example.com"], 2)
        await refused((suffix, body.replace(b"eve@", b"mal@"), headers))
    # Wrong secret.
    await refused(case.send(OTHER_SECRET if kind != "standard" else NEW_WHSEC, ["eve@example.com"], 3))
    # Stale signed timestamp (kinds that sign one).
    if case.stale is not None:
        await refused(case.stale(case.secret))

    # Rotation: the old secret expires later, the new one verifies at once; both work meanwhile.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    rotated = await intake.put_source(
        "src", kind=kind, secrets=[case.new_secret, {"value": case.secret, "expires_at": later}], **case.extra
    )
    assert rotated.status_code == 200, rotated.text
    for n, secret in enumerate((case.new_secret, case.secret), start=10):
        answer = await _post(intake, case.send(secret, [f"rotated{n}@example.com"], n))
        assert answer.status_code == 202, answer.text
    before = (await intake.count(Lead), await intake.count(TimelineEntry))

    # Expired: the old secret no longer verifies.
    earlier = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expired = [case.new_secret, {"value": case.secret, "expires_at": earlier}]
    assert (await intake.put_source("src", kind=kind, secrets=expired, **case.extra)).status_code == 200
    await refused(case.send(case.secret, ["late@example.com"], 20))
    assert (await _post(intake, case.send(case.new_secret, ["new@example.com"], 21))).status_code == 202
    before = (await intake.count(Lead), await intake.count(TimelineEntry))

    # Wrong kind: the same sender, signed its own way, posted to a source of another kind.
    other = "segment" if kind != "segment" else "mautic"
    other_case = CASES[other]
    assert (await intake.put_source("other", kind=other, secrets=[other_case.secret])).status_code == 201
    await refused(case.send(case.new_secret, ["wrongkind@example.com"], 30), name="other")
    # An unknown source and a disabled one: the same 401.
    await refused(case.send(case.new_secret, ["nobody@example.com"], 31), name="unknown")
    disabled = await intake.put_source("src", kind=kind, secrets=[case.new_secret], enabled=False, **case.extra)
    assert disabled.status_code == 200
    await refused(case.send(case.new_secret, ["disabled@example.com"], 32))


async def test_a_batch_is_stored_in_one_transaction_and_a_bad_record_stores_nothing(intake: Intake) -> None:
    assert (await intake.put_source("hs", kind="hubspot", secrets=[SECRET])).status_code == 201
    body = body_of(
        hubspot_batch(*(f"person{n}@example.com" for n in range(50))) + hubspot_batch("not-an-email", first=51)
    )
    answer = await intake.client.post(
        "/v1/webhooks/hs", content=body, headers=hubspot_v3(SECRET, body, uri=f"{PUBLIC_URL}/v1/webhooks/hs")
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "records.50.email"
    assert await intake.count(Lead) == 0
    assert await intake.count(WebhookDelivery) == 0
    body = body_of(hubspot_batch(*(f"person{n}@example.com" for n in range(50))))
    answer = await intake.client.post(
        "/v1/webhooks/hs", content=body, headers=hubspot_v3(SECRET, body, uri=f"{PUBLIC_URL}/v1/webhooks/hs")
    )
    assert answer.status_code == 202
    assert len(answer.json()["lead_ids"]) == 50
    assert await intake.count(Lead) == 50


async def test_concurrent_copies_of_one_delivery_make_its_leads_once(intake: Intake) -> None:
    assert (await intake.put_source("mt", kind="mautic", secrets=[SECRET])).status_code == 201
    raw = body_of(mautic_body("ada@example.com", "grace@example.com"))
    answers = await asyncio.gather(
        *(intake.client.post("/v1/webhooks/mt", content=raw, headers=mautic_signed(SECRET, raw)) for _ in range(8))
    )
    assert sorted(answer.status_code for answer in answers)[0] in (200, 202)
    assert {answer.status_code for answer in answers} <= {200, 202}
    assert len({tuple(answer.json()["lead_ids"]) for answer in answers}) == 1
    assert await intake.count(Lead) == 2


async def test_a_delivery_older_than_72_hours_is_accepted_again(intake: Intake) -> None:
    assert (await intake.put_source("mk", kind="marketo", secrets=[SECRET])).status_code == 201
    _, raw, headers = _marketo(SECRET, ["ada@example.com"], 1)
    headers = {"Content-Type": "application/json", "X-LeadRelay-Token": SECRET}  # the default header
    assert (await intake.client.post("/v1/webhooks/mk", content=raw, headers=headers)).status_code == 202
    async with intake.sessions() as session:
        await session.exec(  # type: ignore[call-overload]
            text("UPDATE webhook_delivery SET accepted_at = :at"),
            params={"at": datetime.now(UTC) - timedelta(hours=73)},
        )
        await session.commit()
    assert (await intake.client.post("/v1/webhooks/mk", content=raw, headers=headers)).status_code == 202
    # Accepted again, not a replay: the same person comes back, so it re-engages the one lead.
    async with intake.sessions() as session:
        [lead] = (await session.exec(select(Lead))).all()
    assert lead.reengagement_count == 1


async def test_secrets_are_never_answered_logged_or_stored_in_clear(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mapping = {"properties.hs_lead_source": "campaign", "properties.industry": "attributes.industry"}
    put = await intake.put_source(
        "hubspot-main",
        kind="hubspot",
        secrets=[SECRET, {"value": NEW_SECRET, "expires_at": "2030-01-01T00:00:00Z"}],
        field_mapping=mapping,
    )
    assert put.status_code == 201, put.text
    listed = await intake.client.get("/v1/sources", headers=intake.admin)
    read = await intake.client.get("/v1/sources/hubspot-main", headers=intake.admin)
    assert read.json() == listed.json()["sources"][0]
    assert read.json()["secrets"] == [
        {"last4": SECRET[-4:], "expires_at": None, "active": True},
        {"last4": NEW_SECRET[-4:], "expires_at": "2030-01-01T00:00:00Z", "active": True},
    ]
    assert read.json()["field_mapping"] == mapping
    assert read.json()["url"] == "/v1/webhooks/hubspot-main"
    body = body_of(hubspot_batch("ada@example.com"))
    accepted = await intake.client.post("/v1/webhooks/hubspot-main", content=body, headers=hubspot_v1(SECRET, body))
    assert accepted.status_code == 202
    refused = await intake.client.post(
        "/v1/webhooks/hubspot-main", content=body, headers=hubspot_v1(OTHER_SECRET, body)
    )
    assert refused.status_code == 401
    deleted = await intake.client.delete("/v1/sources/hubspot-main", headers=intake.admin)
    assert deleted.status_code == 204
    assert (await intake.client.get("/v1/sources/hubspot-main", headers=intake.admin)).status_code == 404
    async with intake.sessions() as session:
        audit = (
            await session.exec(
                select(AuditEntry).where(AuditEntry.target == "hubspot-main").order_by(col(AuditEntry.id))
            )
        ).all()
        assert [entry.action for entry in audit] == ["source.created", "source.deleted"]
    for answer in (put, listed, read, accepted, refused, deleted):
        for secret in (SECRET, NEW_SECRET):
            assert secret not in answer.text
    for secret in (SECRET, NEW_SECRET, OTHER_SECRET):
        assert secret not in caplog.text
        assert all(secret not in str(entry.detail) for entry in audit)


async def test_stored_secrets_are_encrypted(intake: Intake) -> None:
    assert (await intake.put_source("seg", kind="segment", secrets=[SECRET])).status_code == 201
    async with intake.sessions() as session:
        stored = (await session.exec(text("SELECT secrets FROM webhook_source"))).one()  # type: ignore[call-overload]
    assert SECRET not in str(stored)
    assert SECRET[:-4] not in str(stored)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"kind": "fax", "secrets": [SECRET]}, "kind"),
        ({"kind": "mautic", "secrets": []}, "secrets"),
        ({"kind": "mautic", "secrets": ["short"]}, "secrets.0"),
        ({"kind": "mautic", "secrets": [{"value": SECRET, "expires_at": "2030-01-01T00:00:00"}]}, "secrets.0"),
        ({"kind": "standard", "secrets": [SECRET]}, "body"),
        ({"kind": "mautic", "secrets": [SECRET], "field_mapping": {"a.b": "shoe_size"}}, "field_mapping"),
        ({"kind": "mautic", "secrets": [SECRET], "field_mapping": {"a..b": "email"}}, "field_mapping"),
        ({"kind": "mautic", "secrets": [SECRET], "token_header": "X-Token"}, "body"),
        ({"kind": "mautic", "secrets": [SECRET], "colour": "red"}, "colour"),
    ],
)
async def test_an_invalid_source_is_refused_naming_the_field_and_stores_nothing(
    intake: Intake, config: dict[str, Any], field: str
) -> None:
    answer = await intake.client.put("/v1/sources/bad", json=config, headers=intake.admin)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(error["field"].startswith(field) for error in answer.json()["errors"]), answer.json()
    assert SECRET not in answer.text
    assert (await intake.client.get("/v1/sources/bad", headers=intake.admin)).status_code == 404


async def test_an_authentic_payload_of_the_wrong_shape_is_422_and_stores_nothing(intake: Intake) -> None:
    assert (await intake.put_source("mt", kind="mautic", secrets=[SECRET])).status_code == 201
    for raw in (b"[1, 2]", b'{"mautic.lead_post_save_new": {"not": "an array"}}', b"{not json"):
        answer = await intake.client.post("/v1/webhooks/mt", content=raw, headers=mautic_signed(SECRET, raw))
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"]
    assert await intake.count(Lead) == 0


async def test_a_source_over_its_rate_gets_429_with_retry_after(intake: Intake) -> None:
    limiter = RateLimiter(rate=0.01, burst=2)  # this test's own rate: two deliveries, then one every 100 s
    intake.client._transport.app.state.webhook_limiter = limiter  # type: ignore[attr-defined]
    assert (await intake.put_source("fast", kind="segment", secrets=[SECRET])).status_code == 201
    answers = [await _post(intake, _segment(SECRET, [f"p{n}@example.com"], n), name="fast") for n in range(2)]
    stored = (await intake.count(Lead), await intake.count(TimelineEntry))
    answers.append(await _post(intake, _segment(SECRET, ["p2@example.com"], 2), name="fast"))
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert answers[2].headers["content-type"] == "application/problem+json"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert "fast" in answers[2].json()["detail"]
    forged = await _post(intake, _segment("not-the-secret", ["x@example.com"], 9), name="fast")
    assert forged.status_code == 401  # a forger is refused before the rate counts it
    assert (await intake.count(Lead), await intake.count(TimelineEntry)) == stored  # a 429 stores nothing
