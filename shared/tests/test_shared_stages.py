"""The lifecycle state machine, every stage x activity, against the table marketing and sales agreed on."""

import itertools
from pathlib import Path

import pytest

from leadrelay.stages import (
    ENGAGEMENT_ACTIVITIES,
    REASONS,
    TRANSITIONS,
    ActivityType,
    ContactChannel,
    InvalidTransition,
    LeadStage,
    LossReason,
    RejectionReason,
    next_stage,
    transition_table_markdown,
)

LIFECYCLE_MD = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"

S = LeadStage
A = ActivityType
# Written out by hand, not derived from the code: where each rep activity may happen, and where it leads
# ("=" keeps the stage). Every pair not listed must be refused.
AGREED: dict[ActivityType, dict[LeadStage, LeadStage | str]] = {
    A.ACCEPTED: {S.LEAD: S.SAL, S.MQL: S.SAL, S.RECYCLED: S.SAL, S.NURTURE: S.SAL},
    A.REJECTED: {
        S.LEAD: S.REJECTED,
        S.MQL: S.REJECTED,
        S.SAL: S.REJECTED,
        S.RECYCLED: S.REJECTED,
        S.NURTURE: S.REJECTED,
    },
    A.CONTACTED: {S.LEAD: "=", S.MQL: "=", S.SAL: "=", S.SQL: "=", S.OPPORTUNITY: "=", S.RECYCLED: "=", S.NURTURE: "="},
    A.QUALIFIED: {S.SAL: S.SQL},
    A.OPPORTUNITY_CREATED: {S.SQL: S.OPPORTUNITY},
    A.WON: {S.OPPORTUNITY: S.WON},
    A.LOST: {S.SQL: S.LOST, S.OPPORTUNITY: S.LOST},
    A.RECYCLED: {S.MQL: S.RECYCLED, S.SAL: S.RECYCLED, S.SQL: S.RECYCLED, S.REJECTED: S.RECYCLED, S.LOST: S.RECYCLED},
    A.NURTURE: {S.LEAD: S.NURTURE, S.MQL: S.NURTURE, S.RECYCLED: S.NURTURE, S.REJECTED: S.NURTURE, S.LOST: S.NURTURE},
}


def _agreed(stage: LeadStage, activity: ActivityType) -> LeadStage | None:
    if activity in ENGAGEMENT_ACTIVITIES:
        return stage  # engagement is recorded in every stage and never moves the lead
    target = AGREED[activity].get(stage)
    return stage if target == "=" else LeadStage(target) if target else None


@pytest.mark.parametrize(("stage", "activity"), list(itertools.product(LeadStage, ActivityType)))
def test_every_stage_and_activity_leads_where_agreed(stage: LeadStage, activity: ActivityType) -> None:
    expected = _agreed(stage, activity)
    if expected is None:
        with pytest.raises(InvalidTransition) as invalid:
            next_stage(stage, activity)
        assert (invalid.value.stage, invalid.value.activity) == (stage, activity)
        assert f"stage {stage.value}" in str(invalid.value)
    else:
        assert next_stage(stage, activity) == expected
        assert TRANSITIONS[stage, activity] == expected


def test_the_activity_types_are_the_agreed_ones() -> None:
    assert set(AGREED) | ENGAGEMENT_ACTIVITIES == set(ActivityType)
    assert {activity.value for activity in ENGAGEMENT_ACTIVITIES} == {
        "form_submitted",
        "demo_requested",
        "pricing_page_viewed",
        "content_downloaded",
        "webinar_attended",
        "email_clicked",
        "reengaged",
    }
    assert all(activity.is_engagement for activity in ENGAGEMENT_ACTIVITIES)
    assert not any(activity.is_engagement for activity in AGREED)


def test_won_is_final_and_nothing_but_a_rep_leaves_a_closed_stage() -> None:
    assert {activity for (stage, activity), target in TRANSITIONS.items() if stage == S.WON} == ENGAGEMENT_ACTIVITIES
    for (stage, activity), target in TRANSITIONS.items():
        if activity.is_engagement:
            assert target == stage


def test_docs_lifecycle_md_prints_the_table_the_code_uses_and_every_reason() -> None:
    text = LIFECYCLE_MD.read_text()
    assert transition_table_markdown() in text
    for reasons in (RejectionReason, LossReason, ContactChannel):
        for reason in reasons:
            assert f"`{reason.value}`" in text, reason
    assert set(REASONS) == {A.REJECTED, A.LOST}
