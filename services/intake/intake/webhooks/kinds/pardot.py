"""Pardot (Account Engagement) form handlers: form-encoded posts; a token in the query string."""

from collections.abc import Sequence
from urllib.parse import parse_qsl

from intake.webhooks.kinds.base import Delivery, PayloadInvalid, Record, SignatureInvalid, any_matches

FORM = "application/x-www-form-urlencoded"


class Pardot:
    """One lead per form post (Pardot's default field names; the mapping says the rest)."""

    builtin_mapping = {
        "email": ["email"],
        "first_name": ["first_name"],
        "last_name": ["last_name"],
        "company": ["company"],
        "job_title": ["job_title"],
        "phone": ["phone"],
        "country": ["country"],
        "campaign": ["campaign"],
        "crm_id": ["crm_id"],
    }

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """A form handler cannot sign: `?token=` must match; the body hash is the id."""
        if not any_matches(delivery.query.get("token"), list(secrets)):
            raise SignatureInvalid("the token query parameter does not match")
        return delivery.body_hash()

    def records(self, delivery: Delivery) -> list[Record]:
        """The form's fields, flat (a repeated field keeps its last value)."""
        if delivery.content_type.split(";")[0].strip().lower() != FORM:
            raise PayloadInvalid("body", f"must be {FORM}")
        try:
            fields = dict(parse_qsl(delivery.body.decode("utf-8"), keep_blank_values=True, max_num_fields=500))
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadInvalid("body", f"not a form ({type(exc).__name__})") from None
        return [Record(dict(fields), attribute_paths=[""])]
