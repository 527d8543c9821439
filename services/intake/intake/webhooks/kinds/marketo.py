"""Marketo: a webhook whose JSON template the customer writes; a shared token in a configured header."""

from collections.abc import Sequence

from intake.webhooks.kinds.base import Delivery, Record, SignatureInvalid, any_matches, objects, parse_json


class Marketo:
    """Leads from a Marketo webhook template (Marketo field names by default; the mapping says the rest)."""

    builtin_mapping = {
        "email": ["email", "Email"],
        "first_name": ["firstName", "FirstName"],
        "last_name": ["lastName", "LastName"],
        "company": ["company", "Company"],
        "job_title": ["title", "Title"],
        "phone": ["phone", "Phone"],
        "country": ["country", "Country"],
        "campaign": ["campaign", "program"],
        "crm_id": ["id", "leadId"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """Marketo cannot sign: the token it sends in the configured header must match; the body hash is the id."""
        if not any_matches(delivery.headers.get(delivery.token_header), list(secrets)):
            raise SignatureInvalid(f"{delivery.token_header} does not match")
        return delivery.body_hash()

    def records(self, delivery: Delivery) -> list[Record]:
        """An object is one lead; an array is one lead per object."""
        return [Record(record, attribute_paths=[""]) for record in objects(parse_json(delivery.body), "body")]
