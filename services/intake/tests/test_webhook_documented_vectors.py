"""Each kind verifies the signed examples the platforms publish, byte for byte, through intake's own code.

Every vector below is copied verbatim from the source named above it (documentation or the platform's
official library tests), never computed with LeadRelay's signing code. Where a platform publishes no
fixed vector (Mautic, Segment), its own test inputs are used and the expected value was computed with
OpenSSL (`openssl dgst -hmac`), independently of LeadRelay.
"""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import standardwebhooks.webhooks
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request

from intake.sources.models import SourceKind
from intake.webhooks.kinds import KINDS
from intake.webhooks.kinds.base import Delivery, SignatureInvalid
from intake.webhooks.router import _sender_uri
from leadrelay import signing

# --- HubSpot -------------------------------------------------------------------------------------
# "Validating requests", https://developers.hubspot.com/docs/guides/apps/authentication/validating-requests
# (also https://developers.hubspot.com/docs/faq/v1-request-validation and .../v2-request-validation),
# repeated in HubSpot/hubspot-api-nodejs test/unit/signature.spec.ts and
# HubSpot/hubspot-api-php tests/Unit/Utils/SignatureTest.php.
HS_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HS_URI = "https://www.example.com/webhook_uri"
HS_DOCS_V1_BODY = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    '"changeFlag":"NEW","appId":54321}]'
)
HS_DOCS_V1 = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
HS_DOCS_V2_GET = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
HS_DOCS_V2_POST_BODY = '{"example_field":"example_value"}'
HS_DOCS_V2_POST = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

# HubSpot/hubspot-api-python tests/spec/utils/test_signature.py (TEST_DATA; commit 83aedb04) and
# HubSpot/hubspot-api-ruby spec/helpers/signature_spec.rb (TEST_DATA; commit 1277cade): the only
# published v3 vector. The timestamp is in milliseconds: 15000000 is 1970-01-01T04:10:00Z.
HS_SDK_BODY = "{'example_field':'example_value'}"
HS_SDK_TIMESTAMP = "15000000"
HS_SDK_V1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
HS_SDK_V2 = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
HS_SDK_V3 = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
HS_SDK_SIGNED_AT = datetime(1970, 1, 1, 4, 10, tzinfo=UTC)

# --- Standard Webhooks ---------------------------------------------------------------------------
# standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py (commit 33d368b2):
# test_sign_function, test_invalid_signature_raises_error and test_multi_sig_payload_is_valid.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_PAYLOAD = '{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SW_WRONG_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
SW_OTHER_ENTRIES = [
    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
]

# --- Mautic --------------------------------------------------------------------------------------
# Mautic documents the scheme (mautic/developer-documentation-new docs/webhooks/getting_started.rst,
# "Securing a Webhook": base64 HMAC-SHA256 of the raw body, header Webhook-Signature) but publishes no
# fixed vector. Inputs of mautic/mautic app/bundles/WebhookBundle/Tests/Unit/Http/ClientTest.php
# (testPost: json_encode(['payload']), secret 'secret123'); expected value from
# `printf '%s' '["payload"]' | openssl dgst -sha256 -hmac secret123 -binary | base64`.
MAUTIC_SECRET = "secret123"
MAUTIC_BODY = '["payload"]'
MAUTIC_SIGNATURE = "N8vMehOCvgQDRsllxP46+0rC/1n2SpQmlGFiGPjD3nY="

# --- Segment -------------------------------------------------------------------------------------
# Segment documents the scheme (Webhooks (Actions) destination,
# https://www.twilio.com/docs/segment/connections/destinations/catalog/actions-webhook: X-Signature, a
# hex HMAC-SHA1 of the request body with the shared secret) but publishes no fixed vector. Inputs of
# segmentio/action-destinations packages/destination-actions/src/destinations/webhook/__test__/webhook.test.ts
# ("supports request signing": sharedSecret 'abc123', body JSON.stringify({cool: true})); expected
# value from `printf '%s' '{"cool":true}' | openssl dgst -sha1 -hmac abc123`.
SEGMENT_SECRET = "abc123"
SEGMENT_BODY = '{"cool":true}'
SEGMENT_SIGNATURE = "5099cab379b3be52908387457007040cc934ef86"


def delivery(
    body: str, headers: dict[str, str], *, method: str = "POST", uri: str = HS_URI, now: datetime | None = None
) -> Delivery:
    return Delivery(
        method=method,
        uri=uri,
        headers=Headers(headers),
        query=QueryParams(""),
        body=body.encode(),
        now=now or datetime.now(UTC),
    )


def verify(kind: SourceKind, signed: Delivery, secret: str) -> str:
    return KINDS[kind].verify(signed, [secret])


@pytest.mark.parametrize(
    ("version", "method", "body", "signature"),
    [
        pytest.param("v1", "POST", HS_DOCS_V1_BODY, HS_DOCS_V1, id="docs-v1"),
        pytest.param("v2", "GET", "", HS_DOCS_V2_GET, id="docs-v2-get"),
        pytest.param("v2", "POST", HS_DOCS_V2_POST_BODY, HS_DOCS_V2_POST, id="docs-v2-post"),
        pytest.param("v1", "POST", HS_SDK_BODY, HS_SDK_V1, id="python-sdk-v1"),
        pytest.param("v2", "POST", HS_SDK_BODY, HS_SDK_V2, id="python-sdk-v2"),
    ],
)
def test_hubspot_v1_and_v2_verify_hubspots_published_examples(
    version: str, method: str, body: str, signature: str
) -> None:
    headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}
    signed = delivery(body, headers, method=method)
    assert verify(SourceKind.HUBSPOT, signed, HS_SECRET) == signed.body_hash()
    with pytest.raises(SignatureInvalid):
        verify(SourceKind.HUBSPOT, delivery(body + " ", headers, method=method), HS_SECRET)
    if version == "v2":  # v2 signs the method and URI too
        other = "POST" if method == "GET" else "PUT"
        with pytest.raises(SignatureInvalid):
            verify(SourceKind.HUBSPOT, delivery(body, headers, method=other), HS_SECRET)
        with pytest.raises(SignatureInvalid):
            verify(SourceKind.HUBSPOT, delivery(body, headers, method=method, uri=HS_URI + "?x=1"), HS_SECRET)


def test_hubspot_v3_verifies_hubspots_sdk_vector_within_five_minutes_of_its_timestamp() -> None:
    headers = {"X-HubSpot-Signature-v3": HS_SDK_V3, "X-HubSpot-Request-Timestamp": HS_SDK_TIMESTAMP}
    assert (
        signing.hubspot_v3(HS_SECRET, method="POST", uri=HS_URI, body=HS_SDK_BODY.encode(), timestamp=HS_SDK_TIMESTAMP)
        == HS_SDK_V3
    )
    for now in (HS_SDK_SIGNED_AT, HS_SDK_SIGNED_AT + timedelta(minutes=5)):
        signed = delivery(HS_SDK_BODY, headers, now=now)
        assert verify(SourceKind.HUBSPOT, signed, HS_SECRET) == signed.body_hash()
    # "Reject the request if the timestamp is older than 5 minutes" (HubSpot, "Validating requests").
    with pytest.raises(SignatureInvalid, match="5 minutes"):
        verify(
            SourceKind.HUBSPOT,
            delivery(HS_SDK_BODY, headers, now=HS_SDK_SIGNED_AT + timedelta(minutes=5, milliseconds=1)),
            HS_SECRET,
        )
    # The timestamp, the URI and the body are all signed.
    for tampered in (
        delivery(HS_SDK_BODY, {**headers, "X-HubSpot-Request-Timestamp": "15000001"}, now=HS_SDK_SIGNED_AT),
        delivery(HS_SDK_BODY, headers, uri=HS_URI + "/", now=HS_SDK_SIGNED_AT),
        delivery(HS_SDK_BODY.replace("value", "valuE"), headers, now=HS_SDK_SIGNED_AT),
    ):
        with pytest.raises(SignatureInvalid):
            verify(SourceKind.HUBSPOT, tampered, HS_SECRET)


def test_hubspot_v3_decodes_exactly_the_documented_escapes_once() -> None:
    # The table of "Validate the v3 request signature": these twelve are decoded, in either case...
    documented = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                  "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}  # fmt: skip
    for escape, character in documented.items():
        assert signing.hubspot_signed_uri(f"{HS_URI}?q=a{escape}b") == f"{HS_URI}?q=a{character}b"
        assert signing.hubspot_signed_uri(f"{HS_URI}?q=a{escape.lower()}b") == f"{HS_URI}?q=a{character}b"
    # ...and nothing else: not a space, `&`, `=`, `+`, `#`, `%`, nor a non-ASCII byte; never twice.
    kept = f"{HS_URI}?q=a%20b%26c%3Dd%2Be%23f%25g%C3%A9&r=%2540"
    assert signing.hubspot_signed_uri(kept) == kept
    # A URI with escapes verifies as HubSpot signs it: over the decoded form.
    escaped = f"{HS_URI}?portal=62515%3A1&email=ada%40example.com"
    decoded = f"{HS_URI}?portal=62515:1&email=ada@example.com"
    signature = signing.hubspot_v3(
        HS_SECRET, method="POST", uri=decoded, body=HS_SDK_BODY.encode(), timestamp=HS_SDK_TIMESTAMP
    )
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": HS_SDK_TIMESTAMP}
    verify(SourceKind.HUBSPOT, delivery(HS_SDK_BODY, headers, uri=escaped, now=HS_SDK_SIGNED_AT), HS_SECRET)


def _request(*, public_url: str | None, headers: list[tuple[bytes, bytes]], scheme: str = "http") -> Request:
    runtime = SimpleNamespace(settings=SimpleNamespace(webhook_public_url=public_url))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "server": ("10.0.0.7", 8000),
        "path": "/v1/webhooks/hs",
        "raw_path": b"/v1/webhooks/hs",
        "query_string": b"b=2&a=ada%40example.com",
        "headers": headers,
        "app": SimpleNamespace(state=SimpleNamespace(runtime=runtime)),
    }
    return Request(scope)


def test_the_signed_uri_is_the_public_url_plus_the_path_and_query_as_sent() -> None:
    # HubSpot: "The URI ... must exactly match the original request, including the protocol ... query
    # parameters in the exact same order" (v2); v3 signs the same URI with its escapes decoded.
    proxied = [(b"host", b"10.0.0.7:8000"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"evil.example")]
    public = _request(public_url="https://leads.example.com", headers=proxied)
    assert _sender_uri(public) == "https://leads.example.com/v1/webhooks/hs?b=2&a=ada%40example.com"
    # Without WEBHOOK_PUBLIC_URL: the request's own scheme (uvicorn sets it from X-Forwarded-Proto only for
    # a proxy in FORWARDED_ALLOW_IPS) and its Host header; X-Forwarded-Host is never read.
    direct = _request(public_url=None, headers=proxied)
    assert _sender_uri(direct) == "http://10.0.0.7:8000/v1/webhooks/hs?b=2&a=ada%40example.com"


def test_standard_verifies_the_libraries_published_vector_at_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    signed_at = datetime.fromtimestamp(SW_TIMESTAMP, tz=UTC)

    class LibraryClock(datetime):
        """The library's clock, stopped at the vector's timestamp (verification reads only `now`)."""

        @classmethod
        def now(cls, tz: Any = None) -> "LibraryClock":
            return cls.fromtimestamp(SW_TIMESTAMP, tz=tz)

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", LibraryClock)
    assert signing.standard(SW_SECRET, msg_id=SW_MSG_ID, timestamp=SW_TIMESTAMP, body=SW_PAYLOAD.encode()) == (
        SW_SIGNATURE
    )
    headers = {"webhook-id": SW_MSG_ID, "webhook-timestamp": str(SW_TIMESTAMP)}
    signed = delivery(SW_PAYLOAD, {**headers, "webhook-signature": SW_SIGNATURE}, now=signed_at)
    assert verify(SourceKind.STANDARD, signed, SW_SECRET) == SW_MSG_ID
    # The library's own multi-signature example: one matching `v1,` entry among others verifies.
    several = " ".join([*SW_OTHER_ENTRIES, SW_SIGNATURE, SW_OTHER_ENTRIES[0]])
    assert verify(SourceKind.STANDARD, delivery(SW_PAYLOAD, {**headers, "webhook-signature": several}), SW_SECRET)
    with pytest.raises(SignatureInvalid):
        verify(
            SourceKind.STANDARD, delivery(SW_PAYLOAD, {**headers, "webhook-signature": SW_WRONG_SIGNATURE}), SW_SECRET
        )
    with pytest.raises(SignatureInvalid):
        verify(
            SourceKind.STANDARD, delivery(SW_PAYLOAD, {**headers, "webhook-signature": SW_OTHER_ENTRIES[1]}), SW_SECRET
        )


def test_mautic_verifies_mautics_own_test_payload() -> None:
    signed = delivery(MAUTIC_BODY, {"Webhook-Signature": MAUTIC_SIGNATURE})
    assert verify(SourceKind.MAUTIC, signed, MAUTIC_SECRET) == signed.body_hash()
    with pytest.raises(SignatureInvalid):
        verify(SourceKind.MAUTIC, delivery(MAUTIC_BODY + " ", {"Webhook-Signature": MAUTIC_SIGNATURE}), MAUTIC_SECRET)
    with pytest.raises(SignatureInvalid):  # base64 is case-sensitive: no folding
        verify(SourceKind.MAUTIC, delivery(MAUTIC_BODY, {"Webhook-Signature": MAUTIC_SIGNATURE.lower()}), MAUTIC_SECRET)


def test_segment_verifies_segments_own_test_payload() -> None:
    signed = delivery(SEGMENT_BODY, {"X-Signature": SEGMENT_SIGNATURE})
    assert verify(SourceKind.SEGMENT, signed, SEGMENT_SECRET) == signed.body_hash()  # no messageId in this body
    assert verify(
        SourceKind.SEGMENT, delivery(SEGMENT_BODY, {"X-Signature": SEGMENT_SIGNATURE.upper()}), SEGMENT_SECRET
    )
    with pytest.raises(SignatureInvalid):
        verify(SourceKind.SEGMENT, delivery(SEGMENT_BODY + " ", {"X-Signature": SEGMENT_SIGNATURE}), SEGMENT_SECRET)
