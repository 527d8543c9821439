"""Intake's lead rules: what a new lead may hold, and who may move its stage."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from intake.leads.models import Lead
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


@pytest.mark.parametrize("country", ["GBR", "G", "1A", "g.", "ßa", "ﬁ"])
def test_country_is_two_letters_a_to_z(country: str) -> None:
    # "ßa" and "ﬁ" pass a 2-character check but upper-case to "SSA" and "FI": the check comes after.
    assert "country" in _failing_fields(country=country)


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
