"""The lead fields an agreement (the ICP, the routing rules) may read, and the kind of value each holds.

Personal data (email, names, phone) is deliberately absent: no agreement decides on it.
"""

from enum import StrEnum


class FieldType(StrEnum):
    """What kind of value a field holds, which decides the tests an agreement may apply to it."""

    TEXT = "text"
    NUMBER = "number"
    FLAG = "flag"
    COUNTRY = "country"
    LIST = "list"
    ANY = "any"


LEAD_FIELDS: dict[str, FieldType] = {
    "company": FieldType.TEXT,
    "job_title": FieldType.TEXT,
    "country": FieldType.COUNTRY,
    "source": FieldType.TEXT,
    "campaign": FieldType.TEXT,
    "industry": FieldType.TEXT,
    "employees": FieldType.NUMBER,
    "annual_revenue": FieldType.NUMBER,
    "website": FieldType.TEXT,
    "utm_source": FieldType.TEXT,
    "utm_medium": FieldType.TEXT,
    "utm_campaign": FieldType.TEXT,
    "crm_id": FieldType.TEXT,
    "marketing_opt_in": FieldType.FLAG,
    "email_domain": FieldType.TEXT,
    "email_free_mail": FieldType.FLAG,
    "email_disposable": FieldType.FLAG,
    "email_lookalike": FieldType.FLAG,
}
"""The lead.received fields an agreement may read (an ISO 3166-1 alpha-2 code for `country`)."""
