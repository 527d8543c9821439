"""The SLA API (`/v1/sla/...`) and the gauges over stored timers, on the real app (SQLite and PostgreSQL)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import col, select

from leadrelay.apikeys import Scope
from leadrelay.events import utcnow
from leadrelay.stages import SlaState
from leadrelay.testing import Storage, migrated, stored_key, wait_until
from sla_monitor.clocks.models import TeamCalendarRecord
from sla_monitor.config import SlaMonitorSettings
from sla_monitor.context import SlaContext
from sla_monitor.main import MIGRATIONS_DIR, create_app
from sla_monitor.metrics import SlaMetrics
from sla_monitor.policy.service import Policies, builtin_policy
from sla_monitor.reports import service
from sla_monitor.reports.jobs import SlaGauges, gauge_job
from sla_monitor.timers.models import REPLACED, SlaTimer

READER_KEY = "lr_test_sla_reader_0123456789abcdef"
OUTSIDER_KEY = "lr_test_outsider_0123456789abcdef"
START = datetime(2026, 11, 16, tzinfo=UTC)
END = START + timedelta(days=7)
PERIOD = {"from": START.isoformat(), "to": END.isoformat()}


def timer(lead_id: str = "lead-1", **values: Any) -> SlaTimer:
    """A stored timer: first response for rep-a of team-a, wall clock, running, due in an hour, unless told."""
    now = utcnow()
    defaults: dict[str, Any] = {
        "lead_id": lead_id,
        "assignment_id": str(uuid4()),
        "obligation": "first_response",
        "rep_id": "rep-a",
        "team_id": "team-a",
        "grade": "A1",
        "source": "webinar",
        "policy_version": "1",
        "clock": "wall",
        "within_seconds": 3600.0,
        "started_at": now,
        "due_at": now + timedelta(hours=1),
        "status": SlaState.RUNNING.value,
    }
    return SlaTimer(**(defaults | values))


def closed(status: str, at: datetime, *, response: tuple[float, float | None] | None = None, **values: Any) -> SlaTimer:
    """A timer closed at `at` with `status`; `response` (wall, business seconds) recorded at `at` too."""
    responded: dict[str, Any] = {}
    if response is not None:
        responded = {"responded_at": at, "response_seconds": response[0], "response_business_seconds": response[1]}
    started = at - timedelta(hours=2)
    return timer(
        status=status, closed_at=at, started_at=started, due_at=started + timedelta(hours=1), **(responded | values)
    )


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """The sla-monitor's schema with a key that may read the SLA and one that may not."""
    async with migrated(database_url, MIGRATIONS_DIR) as storage:
        async with storage.sessions() as session:
            session.add(stored_key("key_sla_reader", READER_KEY, scopes=[Scope.SLA_READ]))
            session.add(stored_key("key_outsider", OUTSIDER_KEY, scopes=[Scope.ROUTING_READ, Scope.SLA_WRITE]))
            await session.commit()
        yield storage


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """The real sla-monitor app (no broker or jobs) with the reader's key."""
    settings = SlaMonitorSettings(_env_file=None, database_url=storage.url)
    app = create_app(settings, CollectorRegistry())
    app.state.runtime = SimpleNamespace(sessions=storage.sessions, settings=settings)
    headers = {"Authorization": f"Bearer {READER_KEY}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sla-monitor", headers=headers) as client:
        yield client


async def store(storage: Storage, *timers: SlaTimer) -> None:
    """Insert the timers in one transaction."""
    async with storage.sessions() as session:
        session.add_all(timers)
        await session.commit()


def invalid_fields(response: httpx.Response) -> list[str]:
    """The fields a 422 problem names."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


# --- GET /v1/sla/leads/{lead_id}


async def test_a_leads_obligations_newest_assignment_first(api: httpx.AsyncClient, storage: Storage) -> None:
    first_at = utcnow() - timedelta(minutes=30)
    replaced = timer(
        sequence=1,
        rep_id="rep-a",
        status=REPLACED,
        started_at=first_at,
        closed_at=first_at,
        close_reason="reassigned",
        due_at=first_at + timedelta(hours=1),
    )
    second_at = utcnow()
    current = timer(
        sequence=2, rep_id="rep-b", clock="business", started_at=second_at, warn_at=second_at + timedelta(minutes=45)
    )
    follow_up = timer(
        sequence=2,
        assignment_id=current.assignment_id,
        rep_id="rep-b",
        obligation="follow_up",
        started_at=second_at,
        status=SlaState.WARNING.value,
        warned_at=utcnow(),
        due_at=utcnow() - timedelta(seconds=5),
    )
    await store(storage, replaced, current, follow_up, timer("lead-2"))

    response = await api.get("/v1/sla/leads/lead-1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lead_id"] == "lead-1"
    rows = [(o["sequence"], o["obligation"], o["status"], o["rep_id"]) for o in body["obligations"]]
    assert rows == [
        (2, "first_response", "running", "rep-b"),
        (2, "follow_up", "warning", "rep-b"),
        (1, "first_response", "replaced", "rep-a"),
    ]
    running, overdue, gone = body["obligations"]
    assert 3500 < running["remaining_seconds"] <= 3600
    assert (running["clock"], running["team_id"], running["grade"], running["source"]) == (
        "business",
        "team-a",
        "A1",
        "webinar",
    )
    assert overdue["remaining_seconds"] == 0  # due, but the breach is not recorded yet
    assert overdue["warned_at"] is not None
    assert gone["remaining_seconds"] is None
    assert gone["close_reason"] == "reassigned"
    assert gone["assignment_id"] == replaced.assignment_id


async def test_a_lead_without_obligations_is_404(api: httpx.AsyncClient, storage: Storage) -> None:
    await store(storage, timer("lead-1"))

    response = await api.get("/v1/sla/leads/lead-unknown")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "lead-unknown" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/sla/leads/lead-1", "/v1/sla/at-risk", "/v1/sla/report"])
async def test_reading_needs_a_key_with_sla_read(api: httpx.AsyncClient, storage: Storage, path: str) -> None:
    await store(storage, timer("lead-1"))

    anonymous = await api.get(path, headers={"Authorization": ""})
    outsider = await api.get(path, headers={"Authorization": f"Bearer {OUTSIDER_KEY}"})

    assert anonymous.status_code == 401
    assert outsider.status_code == 403
    assert "sla:read" in outsider.json()["detail"]
    assert (await api.get(path)).status_code == 200


# --- GET /v1/sla/at-risk


@pytest.fixture
async def at_risk_timers(storage: Storage) -> dict[str, SlaTimer]:
    """Open timers at various distances from their deadlines, and closed ones that never count."""
    now = utcnow()
    timers = {
        "overdue-b": timer("lead-1", team_id="team-b", due_at=now - timedelta(seconds=1)),
        "follow-up-a": timer("lead-2", obligation="follow_up", due_at=now + timedelta(minutes=5)),
        "soon-a": timer("lead-3", due_at=now + timedelta(minutes=10)),
        "later-b": timer("lead-4", team_id="team-b", due_at=now + timedelta(minutes=20)),
        "warned-a": timer("lead-5", status=SlaState.WARNING.value, warned_at=now, due_at=now + timedelta(hours=1)),
        "far-none": timer("lead-6", team_id=None, due_at=now + timedelta(hours=2)),
        "met-a": timer("lead-7", status=SlaState.MET.value, closed_at=now, due_at=now + timedelta(minutes=1)),
        "breached-a": timer("lead-8", status=SlaState.BREACHED.value, closed_at=now, due_at=now - timedelta(hours=1)),
    }
    await store(storage, *timers.values())
    return timers


def leads_of(response: httpx.Response) -> list[str]:
    """The lead ids an at-risk answer lists, in order."""
    assert response.status_code == 200, response.text
    return [item["lead_id"] for item in response.json()["obligations"]]


async def test_at_risk_lists_warned_and_soon_due_soonest_first(
    api: httpx.AsyncClient, at_risk_timers: dict[str, SlaTimer]
) -> None:
    response = await api.get("/v1/sla/at-risk")

    assert leads_of(response) == ["lead-1", "lead-2", "lead-3", "lead-5"]
    body = response.json()
    assert body["within_seconds"] == 900
    assert body["truncated"] is False
    overdue, _, soon, warned = body["obligations"]
    assert overdue["remaining_seconds"] == 0
    assert 500 < soon["remaining_seconds"] <= 600
    assert (warned["status"], warned["team_id"]) == ("warning", "team-a")
    assert leads_of(await api.get("/v1/sla/at-risk", params={"within_seconds": 1800})) == [
        "lead-1",
        "lead-2",
        "lead-3",
        "lead-4",
        "lead-5",
    ]
    assert leads_of(await api.get("/v1/sla/at-risk", params={"within_seconds": 0})) == ["lead-1", "lead-5"]
    # Per team: team-b's overdue lead-1 is the soonest; team-a has lead-2, lead-3 and the warned lead-5.
    assert [(t["team_id"], t["at_risk"], t["warned"]) for t in body["teams"]] == [("team-b", 1, 0), ("team-a", 3, 1)]
    soonest = datetime.fromisoformat(body["teams"][0]["soonest_due_at"].replace("Z", "+00:00"))
    assert soonest == at_risk_timers["overdue-b"].due_at


async def test_at_risk_filters_by_team_and_obligation_and_caps(
    api: httpx.AsyncClient, at_risk_timers: dict[str, SlaTimer]
) -> None:
    assert leads_of(await api.get("/v1/sla/at-risk", params={"team_id": "team-a"})) == ["lead-2", "lead-3", "lead-5"]
    assert leads_of(await api.get("/v1/sla/at-risk", params={"team_id": "team-b", "within_seconds": 3600})) == [
        "lead-1",
        "lead-4",
    ]
    assert leads_of(await api.get("/v1/sla/at-risk", params={"obligation": "follow_up"})) == ["lead-2"]
    assert leads_of(await api.get("/v1/sla/at-risk", params={"team_id": "team-c"})) == []

    capped = await api.get("/v1/sla/at-risk", params={"limit": 2})
    assert leads_of(capped) == ["lead-1", "lead-2"]
    assert capped.json()["truncated"] is True
    assert [(t["team_id"], t["at_risk"]) for t in capped.json()["teams"]] == [("team-b", 1), ("team-a", 3)]  # all
    exact = await api.get("/v1/sla/at-risk", params={"limit": 4})
    assert exact.json()["truncated"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"within_seconds": -1}, "within_seconds"),
        ({"within_seconds": 7 * 86400 + 1}, "within_seconds"),
        ({"within_seconds": "soon"}, "within_seconds"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"team_id": ""}, "team_id"),
    ],
)
async def test_at_risk_refuses_bad_parameters_by_name(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    assert invalid_fields(await api.get("/v1/sla/at-risk", params=params)) == [field]


# --- GET /v1/sla/report


@pytest.fixture
async def period_timers(storage: Storage) -> None:
    """A week of closed obligations whose figures are computed by hand in the tests."""
    inside = START + timedelta(days=1)
    await store(
        storage,
        # team-a: 3 met, 1 breached (answered late), 2 cancelled; responses 60, 120, 300, 1000 (business half).
        closed("met", START, response=(60, 30), rep_id="rep-a1"),
        closed("met", inside, response=(120, 60), rep_id="rep-a1"),
        closed("met", inside, response=(300, 150), rep_id="rep-a2"),
        closed(
            "breached",
            inside,
            rep_id="rep-a2",
            responded_at=inside + timedelta(hours=3),
            response_seconds=1000,
            response_business_seconds=500,
        ),
        closed("cancelled", inside, close_reason="stage_left"),
        closed(REPLACED, inside, close_reason="reassigned"),
        # team-b: 1 met (no business figure), 1 breached unanswered, and a breach before the period answered in it.
        closed("met", inside, response=(600, None), team_id="team-b", rep_id="rep-b1", obligation="follow_up"),
        closed("breached", inside, team_id="team-b", rep_id="rep-b1"),
        closed(
            "breached",
            START - timedelta(hours=1),
            team_id="team-b",
            rep_id="rep-b1",
            responded_at=START + timedelta(hours=1),
            response_seconds=5000,
            response_business_seconds=2000,
        ),
        # no team: 1 met.
        closed("met", inside, response=(90, 90), team_id=None, rep_id="rep-x"),
        # Outside [START, END): closed before, closed at END; and an open timer.
        closed("met", START - timedelta(seconds=1), response=(10, 10)),
        closed("met", END, response=(10, 10)),
        timer(started_at=inside, due_at=inside + timedelta(hours=1)),
    )


def times(count: int, p50: float | None, p90: float | None, p99: float | None) -> dict[str, Any]:
    """An expected ResponseTimes, compared approximately."""
    return {"count": count, "p50": pytest.approx(p50), "p90": pytest.approx(p90), "p99": pytest.approx(p99)}


TEAM_A = {
    "key": "team-a",
    "met": 3,
    "breached": 1,
    "cancelled": 2,
    "compliance": pytest.approx(0.75),
    "response_seconds": times(4, 210, 790, 979),
    "response_business_seconds": times(4, 105, 395, 489.5),
}
TEAM_B = {
    "key": "team-b",
    "met": 1,
    "breached": 1,
    "cancelled": 0,
    "compliance": pytest.approx(0.5),
    "response_seconds": times(2, 2800, 4560, 4956),
    "response_business_seconds": times(1, 2000, 2000, 2000),
}
NO_TEAM = {
    "key": None,
    "met": 1,
    "breached": 0,
    "cancelled": 0,
    "compliance": pytest.approx(1.0),
    "response_seconds": times(1, 90, 90, 90),
    "response_business_seconds": times(1, 90, 90, 90),
}


async def test_report_by_team_counts_compliance_and_percentiles(api: httpx.AsyncClient, period_timers: None) -> None:
    response = await api.get("/v1/sla/report", params=PERIOD | {"group_by": "team"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["group_by"], body["team_id"]) == (
        "2026-11-16T00:00:00Z",
        "2026-11-23T00:00:00Z",
        "team",
        None,
    )
    assert body["groups"] == [TEAM_A, TEAM_B, NO_TEAM]
    assert body["total"] == {
        "met": 5,
        "breached": 2,
        "cancelled": 2,
        "compliance": pytest.approx(5 / 7),
        "response_seconds": times(7, 300, 2600, 4760),
        "response_business_seconds": times(6, 120, 1250, 1925),
    }


async def test_report_by_rep_and_by_obligation_within_a_team(api: httpx.AsyncClient, period_timers: None) -> None:
    by_rep = (await api.get("/v1/sla/report", params=PERIOD | {"group_by": "rep", "team_id": "team-a"})).json()
    by_obligation = (
        await api.get("/v1/sla/report", params=PERIOD | {"group_by": "obligation", "team_id": "team-b"})
    ).json()

    reps = {row["key"]: (row["met"], row["breached"], row["cancelled"], row["compliance"]) for row in by_rep["groups"]}
    assert reps == {"rep-a": (0, 0, 2, None), "rep-a1": (2, 0, 0, 1.0), "rep-a2": (1, 1, 0, 0.5)}
    assert by_rep["team_id"] == "team-a"
    assert by_rep["total"]["response_seconds"] == times(4, 210, 790, 979)
    obligations = {
        row["key"]: (row["met"], row["breached"], row["response_seconds"]["count"]) for row in by_obligation["groups"]
    }
    assert obligations == {"first_response": (0, 1, 1), "follow_up": (1, 0, 1)}


async def test_report_of_an_empty_period_has_no_groups_and_null_figures(
    api: httpx.AsyncClient, period_timers: None
) -> None:
    params = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-08T00:00:00Z"}
    body = (await api.get("/v1/sla/report", params=params)).json()

    assert body["groups"] == []
    assert body["total"]["compliance"] is None
    assert body["total"]["response_seconds"] == {"count": 0, "p50": None, "p90": None, "p99": None}


async def test_report_defaults_to_the_last_seven_days(api: httpx.AsyncClient, storage: Storage) -> None:
    now = utcnow()
    await store(storage, closed("met", now - timedelta(days=6)), closed("met", now - timedelta(days=8)))

    body = (await api.get("/v1/sla/report")).json()

    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=7)
    assert abs((end - now).total_seconds()) < 60
    assert (body["group_by"], body["total"]["met"]) == ("team", 1)


async def test_a_period_with_more_responses_than_a_report_reads_is_refused_naming_from(
    api: httpx.AsyncClient, period_timers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_REPORT_RESPONSES", 7)
    assert (await api.get("/v1/sla/report", params=PERIOD)).status_code == 200

    monkeypatch.setattr(service, "MAX_REPORT_RESPONSES", 6)
    refused = await api.get("/v1/sla/report", params=PERIOD)

    assert invalid_fields(refused) == ["from"]
    assert "more than 6 responses" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-11-23T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"from": "2026-11-24T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"from": "2026-11-16T00:00:00", "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"from": "last week"}, "from"),
        ({"to": "2026-11-23"}, "to"),
        ({"group_by": "lead"}, "group_by"),
        ({"team_id": ""}, "team_id"),
    ],
)
async def test_report_refuses_bad_parameters_by_name(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    assert invalid_fields(await api.get("/v1/sla/report", params=params)) == [field]


# --- the gauges


def gauge(metrics: SlaMetrics, name: str, **labels: str) -> float | None:
    """A gauge's current sample, None when the series does not exist."""
    return metrics.registry.get_sample_value(name, labels)


async def test_gauges_count_open_and_warned_timers_and_fall_back_to_zero(storage: Storage) -> None:
    now = utcnow()
    warned = timer("lead-3", status=SlaState.WARNING.value, warned_at=now)
    follow_up = timer("lead-4", obligation="follow_up")
    await store(
        storage,
        timer("lead-1"),
        timer("lead-2"),
        warned,
        follow_up,
        timer("lead-5", team_id=None),
        timer("lead-6", team_id="team-b", status=SlaState.MET.value, closed_at=now),
    )
    async with storage.sessions() as session:
        # A team router announced, with nothing open yet.
        session.add(TeamCalendarRecord(team_id="team-c", version=1, timezone="UTC", changed_at=now))
        await session.commit()
    metrics = SlaMetrics(CollectorRegistry())
    builtin = builtin_policy(first_response_seconds=300, escalation=[])
    gauges = SlaGauges(metrics, Policies(builtin=builtin))

    async with storage.sessions() as session:
        await gauges.refresh(session)

    open_name, at_risk_name = "leadrelay_sla_open_obligations", "leadrelay_sla_at_risk"
    assert gauge(metrics, open_name, team="team-a", obligation="first_response") == 3
    assert gauge(metrics, open_name, team="team-a", obligation="follow_up") == 1
    assert gauge(metrics, open_name, team="none", obligation="first_response") == 1
    assert gauge(metrics, open_name, team="team-b", obligation="first_response") is None
    assert gauge(metrics, at_risk_name, team="team-a") == 1
    assert gauge(metrics, at_risk_name, team="none") is None
    assert gauge(metrics, open_name, team="team-c", obligation="first_response") == 0
    assert gauge(metrics, at_risk_name, team="team-c") == 0

    async with storage.sessions() as session:
        rows = await session.exec(select(SlaTimer).where(col(SlaTimer.id).in_([warned.id, follow_up.id])))
        for row in rows.all():
            row.status, row.closed_at, row.next_at = SlaState.MET.value, now, None
        await session.commit()
        await gauges.refresh(session)

    assert gauge(metrics, open_name, team="team-a", obligation="first_response") == 2
    assert gauge(metrics, open_name, team="team-a", obligation="follow_up") == 0
    assert gauge(metrics, at_risk_name, team="team-a") == 0


async def test_the_gauge_job_refreshes_while_leading_and_drops_the_gauges_when_stopped(storage: Storage) -> None:
    await store(storage, timer("lead-1", status=SlaState.WARNING.value, warned_at=utcnow()))
    settings = SlaMonitorSettings(_env_file=None, database_url=storage.url, sla_gauge_interval_seconds=0.05)
    context = SlaContext.of(settings, CollectorRegistry())
    runtime: Any = SimpleNamespace(sessions=storage.sessions, settings=settings)
    job = asyncio.create_task(gauge_job(context)(runtime))

    async def at_risk() -> float | None:
        return gauge(context.metrics, "leadrelay_sla_at_risk", team="team-a")

    assert await wait_until(at_risk, timeout=10, what="the at-risk gauge") == 1
    await store(storage, timer("lead-2", status=SlaState.WARNING.value, warned_at=utcnow()))
    assert await wait_until(lambda: _equals(at_risk, 2), timeout=10, what="the at-risk gauge recounted")
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    assert await at_risk() is None
    assert gauge(context.metrics, "leadrelay_sla_open_obligations", team="team-a", obligation="first_response") is None


async def _equals(probe: Any, expected: float) -> bool:
    return bool(await probe() == expected)
