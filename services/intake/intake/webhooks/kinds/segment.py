"""Segment (Webhooks destination): `X-Signature`, hex HMAC-SHA1 of the raw body; identify and track calls.

As Segment's "Webhooks (Actions) Destination" documents; docs/sources.md#segment.
"""

from collections.abc import Sequence

from intake.webhooks.kinds.base import Delivery, Record, SignatureInvalid, any_matches, objects, parse_json
from leadrelay import signing

sign = signing.segment  # one implementation, shared with `leadrelay demo`


class Segment:
    """People from identify calls (traits) and track calls (properties, context.traits)."""

    builtin_mapping = {
        "email": ["traits.email", "context.traits.email", "properties.email"],
        "first_name": ["traits.firstName", "traits.first_name", "context.traits.firstName"],
        "last_name": ["traits.lastName", "traits.last_name", "context.traits.lastName"],
        "company": ["traits.company.name", "traits.company", "context.traits.company.name"],
        "job_title": ["traits.title", "context.traits.title"],
        "phone": ["traits.phone", "context.traits.phone"],
        "country": [
            "traits.country",
            "traits.address.country",
            "context.traits.country",
            "context.traits.address.country",
        ],
        "campaign": ["context.campaign.name"],
        "crm_id": ["userId"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """The call's messageId is its id (Segment keeps it across retries)."""
        expected = [sign(secret, delivery.body) for secret in secrets]
        if not any_matches(delivery.headers.get("x-signature", "").lower(), expected):
            raise SignatureInvalid("X-Signature does not match")
        try:
            message_id = parse_json(delivery.body).get("messageId")
        except Exception:  # the body is checked properly by records(); here only its id matters
            message_id = None
        return message_id if isinstance(message_id, str) and message_id else delivery.body_hash()

    def records(self, delivery: Delivery) -> list[Record]:
        """identify and track calls are people; page, screen, group and alias calls are not leads."""
        (call,) = objects(parse_json(delivery.body), "body")
        kind = call.get("type")
        if kind == "identify":
            return [Record(call, attribute_paths=["traits"])]
        if kind == "track":
            return [Record(call, attribute_paths=["properties"])]
        return []
