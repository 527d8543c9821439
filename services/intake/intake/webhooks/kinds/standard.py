"""Standard Webhooks (also Zapier and any generic sender), verified by the `standardwebhooks` library."""

import binascii
from collections.abc import Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from intake.webhooks.kinds.base import Delivery, Record, SignatureInvalid, objects, parse_json

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Standard:
    """Leads from `{"type": ..., "data": {...}}` payloads (or a plain object, or an array of them)."""

    builtin_mapping = {
        "email": ["data.email", "email"],
        "first_name": ["data.first_name", "data.firstName", "first_name", "firstName"],
        "last_name": ["data.last_name", "data.lastName", "last_name", "lastName"],
        "company": ["data.company", "company"],
        "job_title": ["data.job_title", "data.title", "job_title", "title"],
        "phone": ["data.phone", "phone"],
        "country": ["data.country", "country"],
        "campaign": ["data.campaign", "campaign"],
        "crm_id": ["data.crm_id", "crm_id"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """webhook-id is the id; the library refuses timestamps more than 5 minutes away."""
        headers = {name: delivery.headers.get(name, "") for name in _HEADERS}
        reason = "no active secret"
        for secret in secrets:
            try:
                Webhook(secret).verify(delivery.body, headers, json_parse=False)
            except (WebhookVerificationError, ValueError, binascii.Error) as exc:
                # ValueError also covers undecodable bodies and malformed `v1,` entries.
                reason = str(exc) if isinstance(exc, WebhookVerificationError) else "malformed signature"
                continue
            return headers["webhook-id"]
        raise SignatureInvalid(reason)

    def records(self, delivery: Delivery) -> list[Record]:
        """`data` (an object or an array of objects) holds the leads; without it the body does."""
        body = parse_json(delivery.body)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return [Record({"data": item}, attribute_paths=["data"]) for item in objects(body["data"], "data")]
        return [
            Record(item, attribute_paths=["data"] if isinstance(item.get("data"), dict) else [""])
            for item in objects(body, "body")
        ]
