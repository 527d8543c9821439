"""HubSpot: signatures v3 (HMAC-SHA256, timestamped), v2 and v1 (SHA-256); workflow bodies and subscription batches.

As HubSpot documents in "Validating requests"; docs/sources.md#hubspot.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from intake.webhooks.kinds.base import (
    SIGNATURE_TOLERANCE,
    Delivery,
    Record,
    SignatureInvalid,
    any_matches,
    objects,
    parse_json,
)
from leadrelay import signing

# One implementation of each signature, shared with the senders LeadRelay simulates (`leadrelay demo`).
signed_uri = signing.hubspot_signed_uri
sign_v3 = signing.hubspot_v3
sign_v2 = signing.hubspot_v2
sign_v1 = signing.hubspot_v1


class HubSpot:
    """Contacts from HubSpot workflows ("Send a webhook") and webhook subscriptions."""

    builtin_mapping = {
        "email": ["properties.email", "email"],
        "first_name": ["properties.firstname", "firstname"],
        "last_name": ["properties.lastname", "lastname"],
        "company": ["properties.company", "company"],
        "job_title": ["properties.jobtitle", "jobtitle"],
        "phone": ["properties.phone", "properties.mobilephone", "phone"],
        "country": ["properties.country", "country"],
        "campaign": ["properties.hs_analytics_source_data_1"],
        "crm_id": ["objectId", "vid", "properties.hs_object_id"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """v3 when HubSpot sends it (it always does now), else v2 or v1 as X-HubSpot-Signature-Version says."""
        headers = delivery.headers
        if (v3 := headers.get("x-hubspot-signature-v3")) is not None:
            timestamp = headers.get("x-hubspot-request-timestamp", "")
            if not timestamp.isascii() or not timestamp.isdigit():
                raise SignatureInvalid("X-HubSpot-Request-Timestamp is not a time in milliseconds")
            signed_at = datetime.fromtimestamp(int(timestamp[:15]) / 1000, tz=UTC)
            # HubSpot documents "reject if older than 5 minutes"; its SDKs accept any future time. More than
            # 5 minutes ahead is refused too: a far-future stamp would stay valid after the replay store forgot it.
            if abs(delivery.now - signed_at) > SIGNATURE_TOLERANCE:
                raise SignatureInvalid("X-HubSpot-Request-Timestamp is more than 5 minutes away")
            expected = [
                sign_v3(secret, method=delivery.method, uri=delivery.uri, body=delivery.body, timestamp=timestamp)
                for secret in secrets
            ]
            if not any_matches(v3, expected):
                raise SignatureInvalid("X-HubSpot-Signature-v3 does not match")
            return delivery.body_hash()
        version = headers.get("x-hubspot-signature-version", "")
        if version == "v2":
            expected = [sign_v2(s, method=delivery.method, uri=delivery.uri, body=delivery.body) for s in secrets]
        elif version == "v1":
            expected = [sign_v1(secret, body=delivery.body) for secret in secrets]
        else:
            raise SignatureInvalid("no X-HubSpot-Signature-v3, and X-HubSpot-Signature-Version is not v1 or v2")
        if not any_matches(headers.get("x-hubspot-signature", "").lower(), expected):
            raise SignatureInvalid("X-HubSpot-Signature does not match")
        return delivery.body_hash()

    def records(self, delivery: Delivery) -> list[Record]:
        """A workflow body is one record; a subscription batch is one record per contact it names."""
        body = parse_json(delivery.body)
        if isinstance(body, list):
            return _contacts(objects(body, "body"))
        (record,) = objects(body, "body")
        properties = record.get("properties")
        return [Record(record, attribute_paths=["properties"] if isinstance(properties, dict) else [""])]


def _contacts(events: list[dict[str, Any]]) -> list[Record]:
    # A batch reports property changes one event at a time: gather each contact's changes into
    # one record ({"objectId", "portalId", "properties": {name: value}}), in order of first mention.
    contacts: dict[Any, dict[str, Any]] = {}
    for event in events:
        if not str(event.get("subscriptionType", "")).startswith("contact."):
            continue
        contact = contacts.setdefault(
            event.get("objectId"),
            {"objectId": event.get("objectId"), "portalId": event.get("portalId"), "properties": {}},
        )
        name = event.get("propertyName")
        if isinstance(name, str):
            contact["properties"][name] = event.get("propertyValue")
    return [Record(contact, attribute_paths=["properties"]) for contact in contacts.values()]
