"""The placeholder ICP explains every point it gives."""

from datetime import UTC, datetime

from leadrelay.events import LeadReceived
from scoring.scores.service import evaluate


def _lead(**fields: str) -> LeadReceived:
    return LeadReceived(lead_id="lead-1", source="api", received_at=datetime(2026, 11, 23, tzinfo=UTC), **fields)  # type: ignore[arg-type]


def test_complete_business_lead_scores_every_criterion() -> None:
    criteria = evaluate(_lead(email="ada@analytical.example", company="AE", job_title="CTO", phone="+44 20 7946 0000"))
    assert {c.criterion: c.points for c in criteria} == {
        "business_email": 30,
        "company_known": 30,
        "job_title_known": 20,
        "reachable_by_phone": 20,
    }


def test_free_mail_lead_without_details_scores_nothing_and_says_why() -> None:
    criteria = evaluate(_lead(email="someone@gmail.com"))
    assert sum(c.points for c in criteria) == 0
    assert next(c for c in criteria if c.criterion == "business_email").reason == "free-mail domain"
