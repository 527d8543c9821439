"""Intake's lead rules: what a new lead may hold, and who may move its stage."""

import json
from typing import Any

import pytest
from confusable_homoglyphs import confusables
from pydantic import ValidationError

from intake.leads.models import Lead
from intake.leads.normalise import email_facts
from intake.leads.schemas import MAX_ATTRIBUTES_BYTES, LeadCreate
from intake.leads.service import advance_stage
from leadrelay.stages import SCORING_STAGES, LeadStage


def _failing_fields(**fields: Any) -> set[str]:
    with pytest.raises(ValidationError) as invalid:
        LeadCreate.model_validate({"email": "ada@example.com", **fields})
    return {".".join(str(part) for part in error["loc"]) for error in invalid.value.errors()}


def test_email_is_trimmed_and_lowercased_and_country_uppercased() -> None:
    lead = LeadCreate.model_validate({"email": "  Ada@Example.COM ", "country": "gb"})
    assert (lead.email, lead.country) == ("ada@example.com", "GB")


@pytest.mark.parametrize(
    ("country", "code"),
    [
        ("gb", "GB"),
        ("GBR", "GB"),
        ("826", "GB"),
        ("United Kingdom", "GB"),
        ("uk", "GB"),
        (" germany ", "DE"),
        ("\ufb01", "FI"),
    ],
)
def test_country_codes_and_names_become_iso_alpha_2(country: str, code: str) -> None:
    # "\ufb01" is the "fi" ligature: NFKC makes it "fi", Finland.
    assert LeadCreate.model_validate({"email": "ada@example.com", "country": country}).country == code


@pytest.mark.parametrize("country", ["G", "1A", "g.", "ßa", "Narnia", "XX"])
def test_country_must_name_a_country(country: str) -> None:
    # "ßa" passes a 2-character check but upper-cases to "SSA": the check comes after normalising.
    assert "country" in _failing_fields(country=country)


@pytest.mark.parametrize(
    ("fields", "phone"),
    [
        ({"phone": "020 7946 0000", "country": "GB"}, "+442079460000"),
        ({"phone": "+1 (415) 555-2671"}, "+14155552671"),
        ({"phone": "(415) 555-2671", "country": "United States"}, "+14155552671"),
        ({"phone": "  "}, None),
    ],
)
def test_phone_becomes_e164_in_the_leads_country(fields: dict[str, Any], phone: str | None) -> None:
    assert LeadCreate.model_validate({"email": "ada@example.com", **fields}).phone == phone


@pytest.mark.parametrize("phone", ["020 7946 0000", "not a phone", "+44 1"])
def test_a_phone_that_cannot_be_read_is_named(phone: str) -> None:
    # Without a country a national number cannot be read.
    assert "phone" in _failing_fields(phone=phone)


@pytest.mark.parametrize(
    ("email", "normalised"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("ADA@BÜCHER.de", "ada@bücher.de"),
        ("\uff46\uff55\uff4c\uff4c@example.com", "full@example.com"),  # full-width letters, NFKC
    ],
)
def test_email_is_normalised(email: str, normalised: str) -> None:
    assert LeadCreate.model_validate({"email": email}).email == normalised


@pytest.mark.parametrize(
    ("address", "lookalike"),
    [
        ("john@example.com", False),
        ("".join(chr(code) for code in range(33, 127)) + "@example.com", False),  # every printable ASCII character
        ("j\u043ehn@example.com", True),  # a Cyrillic "o" among Latin letters
        ("zo\u00eb@b\u00fccher.de", False),  # Latin beyond ASCII
    ],
)
def test_an_address_mixing_lookalike_scripts_is_flagged(address: str, lookalike: bool) -> None:
    assert email_facts(address).lookalike is lookalike
    assert lookalike is bool(confusables.is_dangerous(address))  # what the library says, asked every time


@pytest.mark.parametrize("email", ["not-an-email", "ada@", "ada@example", "a b@example.com", "ada@-example.com"])
def test_an_invalid_email_is_named(email: str) -> None:
    assert "email" in _failing_fields(email=email)


def test_text_is_nfkc_normalised_and_whitespace_collapsed_and_blank_is_absent() -> None:
    lead = LeadCreate.model_validate(
        {"email": "ada@example.com", "company": "  Analytical\u00a0\u00a0 Engines\n Ltd ", "job_title": " \t "}
    )
    assert (lead.company, lead.job_title) == ("Analytical Engines Ltd", None)


def test_length_is_checked_after_normalising() -> None:
    # One character that NFKC turns into 18: fits before normalising, not after.
    assert "first_name" in _failing_fields(first_name="\ufdfa" * 12)
    assert "source" in _failing_fields(source="   ")


def test_attributes_are_bounded_in_bytes() -> None:
    fits = {"notes": "x" * (MAX_ATTRIBUTES_BYTES - len(json.dumps({"notes": ""})))}
    assert LeadCreate.model_validate({"email": "ada@example.com", "attributes": fits}).attributes == fits
    too_big = {"notes": fits["notes"] + "x"}
    assert _failing_fields(attributes=too_big) == {"attributes"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"shoe_size": 44}, "shoe_size"),
        ({"first_name": "A\x00da"}, "first_name"),
        ({"attributes": {"key": "\ud800"}}, "attributes"),
        ({"source": ""}, "source"),
        ({"employees": -1}, "employees"),
        ({"annual_revenue": 10**16}, "annual_revenue"),
        ({"marketing_opt_in": "maybe"}, "marketing_opt_in"),
        ({"crm_id": "x" * 101}, "crm_id"),
        ({"email_domain": "example.com"}, "email_domain"),
    ],
)
def test_invalid_fields_are_named(fields: dict[str, Any], field: str) -> None:
    assert field in _failing_fields(**fields)


@pytest.mark.parametrize("current", sorted(SCORING_STAGES))
def test_scoring_moves_a_lead_between_its_own_stages(current: LeadStage) -> None:
    lead = Lead(email="ada@example.com", stage=current)
    advance_stage(lead, LeadStage.MQL)
    assert lead.stage == LeadStage.MQL


@pytest.mark.parametrize("current", sorted(set(LeadStage) - SCORING_STAGES))
def test_scoring_never_moves_a_lead_a_rep_moved_on(current: LeadStage) -> None:
    lead = Lead(email="ada@example.com", stage=current)
    advance_stage(lead, LeadStage.MQL)
    assert lead.stage == current
    assert not current.set_by_scoring
