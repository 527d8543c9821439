"""Each kind verifies its platform's documented examples, and refuses what the platform would not send."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from starlette.datastructures import Headers, QueryParams

from intake.config import IntakeSettings
from intake.sources.crypto import source_box
from intake.sources.models import SourceKind
from intake.webhooks.kinds import KINDS, hubspot
from intake.webhooks.kinds.base import Delivery, Record, SignatureInvalid
from intake.webhooks.mapping import to_leads

# HubSpot, "Validating requests" (v1 and v2): client secret, bodies and resulting hashes as documented.
HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    b'"changeFlag":"NEW","appId":54321}]'
)
HUBSPOT_V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
HUBSPOT_V2_URI = "https://www.example.com/webhook_uri"
HUBSPOT_V2_BODY = b'{"example_field":"example_value"}'
HUBSPOT_V2_SIGNATURE = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

# Standard Webhooks, the reference library's documented signing example.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_PAYLOAD = '{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def delivery(
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    uri: str = HUBSPOT_V2_URI,
    now: datetime | None = None,
    query: str = "",
    content_type: str = "application/json",
) -> Delivery:
    return Delivery(
        method="POST",
        uri=uri,
        headers=Headers(headers or {}),
        query=QueryParams(query),
        body=body,
        now=now or datetime.now(UTC),
        content_type=content_type,
    )


def test_hubspot_v1_verifies_the_documented_example() -> None:
    signed = delivery(
        HUBSPOT_V1_BODY, {"X-HubSpot-Signature": HUBSPOT_V1_SIGNATURE, "X-HubSpot-Signature-Version": "v1"}
    )
    assert KINDS[SourceKind.HUBSPOT].verify(signed, [HUBSPOT_SECRET]) == signed.body_hash()
    with pytest.raises(SignatureInvalid):
        KINDS[SourceKind.HUBSPOT].verify(signed, ["x" + HUBSPOT_SECRET[1:]])
    tampered = delivery(HUBSPOT_V1_BODY.replace(b"123", b"124"), dict(signed.headers))
    with pytest.raises(SignatureInvalid):
        KINDS[SourceKind.HUBSPOT].verify(tampered, [HUBSPOT_SECRET])


def test_hubspot_v2_verifies_the_documented_example() -> None:
    signed = delivery(
        HUBSPOT_V2_BODY, {"X-HubSpot-Signature": HUBSPOT_V2_SIGNATURE, "X-HubSpot-Signature-Version": "v2"}
    )
    KINDS[SourceKind.HUBSPOT].verify(signed, [HUBSPOT_SECRET])
    elsewhere = delivery(HUBSPOT_V2_BODY, dict(signed.headers), uri="https://www.example.com/other_uri")
    with pytest.raises(SignatureInvalid):
        KINDS[SourceKind.HUBSPOT].verify(elsewhere, [HUBSPOT_SECRET])


def test_hubspot_v3_signs_the_uri_with_hubspots_escapes_decoded() -> None:
    assert hubspot.signed_uri("https://x.example/hook?email=ada%40example.com%3Bb&q=a%2Cb%20c") == (
        "https://x.example/hook?email=ada@example.com;b&q=a,b%20c"  # %20 is not in HubSpot's table
    )
    now = datetime.now(UTC)
    timestamp = str(int(now.timestamp() * 1000))
    uri = "https://leads.example.com/v1/webhooks/hs?portal=62515%3A1"
    signature = hubspot.sign_v3(HUBSPOT_SECRET, method="POST", uri=uri, body=HUBSPOT_V1_BODY, timestamp=timestamp)
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}
    KINDS[SourceKind.HUBSPOT].verify(delivery(HUBSPOT_V1_BODY, headers, uri=uri, now=now), [HUBSPOT_SECRET])
    with pytest.raises(SignatureInvalid):  # more than 5 minutes later: refused even with the right signature
        KINDS[SourceKind.HUBSPOT].verify(
            delivery(HUBSPOT_V1_BODY, headers, uri=uri, now=now + timedelta(minutes=5, seconds=1)), [HUBSPOT_SECRET]
        )
    with pytest.raises(SignatureInvalid):  # v3 present and wrong: the older signatures are not a fallback
        KINDS[SourceKind.HUBSPOT].verify(
            delivery(
                HUBSPOT_V1_BODY,
                {
                    **headers,
                    "X-HubSpot-Signature-v3": "AAAA" + signature[4:],
                    "X-HubSpot-Signature": HUBSPOT_V1_SIGNATURE,
                    "X-HubSpot-Signature-Version": "v1",
                },
                uri=uri,
                now=now,
            ),
            [HUBSPOT_SECRET],
        )


def test_standard_signs_the_documented_example_and_verifies_through_the_library() -> None:
    signed_at = datetime.fromtimestamp(STANDARD_TIMESTAMP, tz=UTC)
    assert Webhook(STANDARD_SECRET).sign(STANDARD_MSG_ID, signed_at, STANDARD_PAYLOAD) == STANDARD_SIGNATURE
    # The documented signature is years old: the library refuses it as stale, and so does the kind.
    stale = delivery(
        STANDARD_PAYLOAD.encode(),
        {
            "webhook-id": STANDARD_MSG_ID,
            "webhook-timestamp": str(STANDARD_TIMESTAMP),
            "webhook-signature": STANDARD_SIGNATURE,
        },
    )
    with pytest.raises(SignatureInvalid, match="too old"):
        KINDS[SourceKind.STANDARD].verify(stale, [STANDARD_SECRET])
    now = int(time.time())
    fresh = Webhook(STANDARD_SECRET).sign(STANDARD_MSG_ID, datetime.fromtimestamp(now, tz=UTC), STANDARD_PAYLOAD)
    headers = {"webhook-id": STANDARD_MSG_ID, "webhook-timestamp": str(now)}
    # Several space-separated entries, one of them right: verified (a sender rotating its secret sends both).
    signatures = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {fresh}"
    signed = delivery(STANDARD_PAYLOAD.encode(), {**headers, "webhook-signature": signatures})
    assert KINDS[SourceKind.STANDARD].verify(signed, [STANDARD_SECRET]) == STANDARD_MSG_ID
    for garbage in ("v1", "v1,!!!", "", "v1,a,b"):
        with pytest.raises(SignatureInvalid):
            KINDS[SourceKind.STANDARD].verify(
                delivery(STANDARD_PAYLOAD.encode(), {**headers, "webhook-signature": garbage}), [STANDARD_SECRET]
            )
    with pytest.raises(SignatureInvalid):
        KINDS[SourceKind.STANDARD].verify(
            delivery(b"\xff\xfe", {**headers, "webhook-signature": fresh}), [STANDARD_SECRET]
        )


def test_a_hubspot_batch_is_one_record_per_contact() -> None:
    events: list[dict[str, Any]] = [
        {"objectId": 1, "portalId": 62515, "subscriptionType": "contact.creation", "eventId": 1},
        {
            "objectId": 1,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "email",
            "propertyValue": "a@x.io",
        },
        {
            "objectId": 2,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "email",
            "propertyValue": "b@x.io",
        },
        {
            "objectId": 1,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "firstname",
            "propertyValue": "Ann",
        },
        {"objectId": 3, "subscriptionType": "deal.creation"},
        {"objectId": 4, "subscriptionType": "contact.creation"},
    ]
    import json

    records = KINDS[SourceKind.HUBSPOT].records(delivery(json.dumps(events).encode()))
    assert [record.data["objectId"] for record in records] == [1, 2, 4]
    leads = to_leads(records, builtin=KINDS[SourceKind.HUBSPOT].builtin_mapping, custom={}, source_name="hs")
    # Contact 4 names no email yet: not a lead.
    assert [(lead.email, lead.first_name, lead.source) for lead in leads] == [
        ("a@x.io", "Ann", "hs"),
        ("b@x.io", None, "hs"),
    ]


def test_the_mapping_adds_to_the_builtin_one_and_unnamed_fields_become_attributes() -> None:
    record = Record(
        {"properties": {"email": {"value": "Ada@Example.com"}, "industry": "Engines", "hs_lead_source": "webinar",
                        "numemployees": 250, "empty": "", "nested": {"x": 1}}},
        attribute_paths=["properties"],
    )  # fmt: skip
    custom = {"properties.hs_lead_source": "campaign", "properties.industry": "attributes.sector"}
    (lead,) = to_leads([record], builtin=KINDS[SourceKind.HUBSPOT].builtin_mapping, custom=custom, source_name="hs")
    assert (lead.email, lead.campaign) == ("ada@example.com", "webinar")
    assert lead.attributes == {"sector": "Engines", "numemployees": 250}


def test_many_unnamed_fields_are_kept_while_they_fit() -> None:
    record = Record({"email": "ada@example.com", **{f"field_{n}": "x" * 100 for n in range(400)}}, attribute_paths=[""])
    (lead,) = to_leads([record], builtin=KINDS[SourceKind.MARKETO].builtin_mapping, custom={}, source_name="mk")
    assert 100 < len(lead.attributes) < 400


def test_the_development_secret_key_is_refused_in_production_without_showing_it() -> None:
    from pydantic import ValidationError

    from leadrelay.secrets import DEFAULT_SECRET_KEY

    with pytest.raises(ValidationError) as refused:
        IntakeSettings(_env_file=None, environment="production")  # type: ignore[call-arg]
    assert "LEADRELAY_SECRET_KEY" in str(refused.value)
    assert DEFAULT_SECRET_KEY not in str(refused.value)
    chosen = "a-real-production-secret-key-0123456789"
    settings = IntakeSettings(_env_file=None, environment="production", LEADRELAY_SECRET_KEY=chosen)  # type: ignore[call-arg]
    assert chosen not in repr(settings)


def test_secrets_encrypted_with_one_key_do_not_open_with_another() -> None:
    box = source_box("first-key-0123456789")
    token = box.encrypt("hubspot-client-secret")
    assert "hubspot-client-secret" not in token
    assert box.decrypt(token) == "hubspot-client-secret"
    assert source_box("second-key-0123456789").decrypt(token) is None


def test_a_hubspot_workflow_body_is_one_lead_from_its_properties() -> None:
    body = b'{"vid": 7551, "properties": {"email": {"value": "ada@example.com"}, "firstname": {"value": "Ada"}, "lifecyclestage": {"value": "lead"}}}'  # noqa: E501
    kind = KINDS[SourceKind.HUBSPOT]
    (lead,) = to_leads(kind.records(delivery(body)), builtin=kind.builtin_mapping, custom={}, source_name="hs")
    assert (lead.email, lead.first_name, lead.attributes) == ("ada@example.com", "Ada", {"lifecyclestage": "lead"})


def test_segment_track_calls_are_leads_and_page_calls_are_not() -> None:
    kind = KINDS[SourceKind.SEGMENT]
    track = (
        b'{"type": "track", "event": "Registered", "userId": "019mr8mf4r", "messageId": "m-1",'
        b' "properties": {"plan": "Pro Annual", "accountType": "Facebook"},'
        b' "context": {"traits": {"email": "peter@example.com"}, "campaign": {"name": "TPS Innovation Newsletter"}}}'
    )
    (lead,) = to_leads(kind.records(delivery(track)), builtin=kind.builtin_mapping, custom={}, source_name="seg")
    assert (lead.email, lead.campaign) == ("peter@example.com", "TPS Innovation Newsletter")
    assert lead.attributes == {"plan": "Pro Annual", "accountType": "Facebook"}
    page = b'{"type": "page", "name": "Pricing", "context": {"traits": {"email": "peter@example.com"}}}'
    assert kind.records(delivery(page)) == []


def test_a_pardot_post_must_be_form_encoded() -> None:
    from intake.webhooks.kinds.base import PayloadInvalid

    kind = KINDS[SourceKind.PARDOT]
    form = delivery(b"email=ada%40example.com&first_name=Ada", content_type="application/x-www-form-urlencoded")
    (lead,) = to_leads(kind.records(form), builtin=kind.builtin_mapping, custom={}, source_name="pd")
    assert (lead.email, lead.first_name) == ("ada@example.com", "Ada")
    with pytest.raises(PayloadInvalid):
        kind.records(delivery(b'{"email": "ada@example.com"}'))


def _country_delivery(kind: SourceKind, country: str) -> Delivery:
    """A documented body shape of each platform carrying a country where that platform puts it."""
    if kind == SourceKind.PARDOT:
        form = f"email=ada%40example.com&country={country.replace(' ', '+')}".encode()
        return delivery(form, content_type="application/x-www-form-urlencoded")
    email = "ada@example.com"
    shapes: dict[SourceKind, Any] = {
        SourceKind.HUBSPOT: {"vid": 7551, "properties": {"email": {"value": email}, "country": {"value": country}}},
        SourceKind.MAUTIC: {
            "mautic.lead_post_save_new": [
                {"contact": {"id": 7, "fields": {"all": {"email": email, "country": country}}}}
            ]
        },
        SourceKind.SEGMENT: {
            "type": "identify",
            "userId": "u-1",
            "messageId": "m-1",
            "traits": {"email": email, "address": {"country": country}},
        },
        SourceKind.MARKETO: {"email": email, "country": country},
        SourceKind.STANDARD: {"type": "lead.created", "data": {"email": email, "country": country}},
    }
    import json

    return delivery(json.dumps(shapes[kind]).encode())


def _lead_of(kind: SourceKind, country: str) -> Any:
    mapping = KINDS[kind]
    records = mapping.records(_country_delivery(kind, country))
    (lead,) = to_leads(records, builtin=mapping.builtin_mapping, custom={}, source_name="s")
    return lead


@pytest.mark.parametrize("kind", list(SourceKind))
def test_each_kind_maps_the_country_where_its_platform_sends_it(kind: SourceKind) -> None:
    lead = _lead_of(kind, "United Kingdom")
    assert lead.country == "GB"
    assert "country" not in lead.attributes


@pytest.mark.parametrize("kind", list(SourceKind))
def test_a_country_no_lead_can_hold_is_kept_as_an_attribute(kind: SourceKind) -> None:
    lead = _lead_of(kind, "Untied Kingdom")
    assert lead.country is None
    assert lead.attributes["country"] == "Untied Kingdom"
