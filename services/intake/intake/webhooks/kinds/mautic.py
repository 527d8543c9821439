"""Mautic: `Webhook-Signature`, base64 HMAC-SHA256 of the raw body; bodies keyed by event name.

As Mautic's developer documentation ("Webhooks") describes; docs/sources.md#mautic.
"""

from collections.abc import Sequence

from intake.webhooks.kinds.base import (
    Delivery,
    PayloadInvalid,
    Record,
    SignatureInvalid,
    any_matches,
    objects,
    parse_json,
)
from leadrelay import signing

_CONTACTS = ("contact", "lead", "submission.lead")


sign = signing.mautic  # one implementation, shared with `leadrelay demo`


def _paths(*fields: str) -> list[str]:
    # A contact's fields come flat under fields.all and as {"value": ...} under fields.core.
    return [
        f"{contact}.fields.{group}.{field}" for field in fields for contact in _CONTACTS for group in ("all", "core")
    ]


class Mautic:
    """Contacts from Mautic events: mautic.lead_post_save_new, mautic.form_on_submit, and any other carrying one."""

    builtin_mapping = {
        "email": [*_paths("email"), "submission.results.email"],
        "first_name": [*_paths("firstname"), "submission.results.firstname", "submission.results.first_name"],
        "last_name": [*_paths("lastname"), "submission.results.lastname", "submission.results.last_name"],
        "company": [*_paths("company"), "submission.results.company"],
        "job_title": [*_paths("position"), "submission.results.position", "submission.results.job_title"],
        "phone": [*_paths("phone", "mobile"), "submission.results.phone"],
        "country": [*_paths("country"), "submission.results.country"],
        "crm_id": ["contact.id", "lead.id", "submission.lead.id"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """Mautic sends no delivery id: the body's hash is its id."""
        expected = [sign(secret, delivery.body) for secret in secrets]
        if not any_matches(delivery.headers.get("webhook-signature"), expected):
            raise SignatureInvalid("Webhook-Signature does not match")
        return delivery.body_hash()

    def records(self, delivery: Delivery) -> list[Record]:
        """One record per event payload, across every event type in the body."""
        body = parse_json(delivery.body)
        if not isinstance(body, dict):
            raise PayloadInvalid("body", "must be an object keyed by event name (mautic.lead_post_save_new, ...)")
        records = []
        for event_type, payloads in body.items():
            if not isinstance(payloads, list):
                raise PayloadInvalid(event_type, "must be an array of event payloads")
            for payload in objects(payloads, event_type):
                roots = [f"{contact}.fields.all" for contact in _CONTACTS] + ["submission.results"]
                records.append(Record(payload, attribute_paths=roots))
        return records
