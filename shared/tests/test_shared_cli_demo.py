"""`leadrelay demo`'s rep responses, against a fake intake: a share of leads accepted (and contacted) later."""

import json
from typing import Any

import httpx
import pytest

from leadrelay.cli.demo import OWNER_LOOKUPS, Demo
from leadrelay.cli.http import ServiceClient

STEP_SECONDS = 1.0
RESPOND_AFTER = 10.0


class FakeIntake:
    """Intake as far as the demo uses it: every lead gets an id; owners as the test sets them."""

    def __init__(self) -> None:
        self.leads = 0
        self.owners: dict[str, str | None] = {}
        self.unowned: set[str] = set()  # never assigned (queued or nurtured)
        self.created: dict[str, float] = {}
        self.sent: list[tuple[float, str, str, Any]] = []
        self.now = 0.0

    def new_lead(self) -> str:
        self.leads += 1
        lead_id = f"lead-{self.leads}"
        self.created[lead_id] = self.now
        # Every third lead waits in a queue; the others are routed by the time anyone looks.
        if self.leads % 3 == 0:
            self.unowned.add(lead_id)
        else:
            self.owners[lead_id] = f"rep-{self.leads % 2}"
        return lead_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = _json(request.content)
        self.sent.append((self.now, method, path, body))
        if method == "GET" and path.startswith("/v1/leads/"):
            lead_id = path.split("/")[3]
            return httpx.Response(200, json={"id": lead_id, "owner_rep_id": self.owners.get(lead_id)})
        if path.endswith("/activities"):
            return httpx.Response(201, json={"id": f"activity-{len(self.sent)}", "lead_id": path.split("/")[3]})
        if path == "/v1/leads":
            return httpx.Response(201, json={"id": self.new_lead()})
        if path == "/v1/leads:batch":
            return httpx.Response(202, json={"results": [{"id": self.new_lead()} for _ in body["leads"]]})
        if path.startswith("/v1/webhooks/"):
            return httpx.Response(202, json={"lead_ids": [self.new_lead()]})
        return httpx.Response(200, json={})


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None  # a form-encoded webhook, or no body


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> FakeIntake:
    fake = FakeIntake()
    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(fake.handle), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    return fake


def _run(intake: FakeIntake, *, steps: int, respond_share: float) -> Demo:
    with ServiceClient("http://intake.test", "lr_test") as client:
        demo = Demo(
            client,
            "http://intake.test",
            seed=3,
            respond_share=respond_share,
            respond_after=RESPOND_AFTER,
            clock=lambda: intake.now,
        )
        for _ in range(steps):
            demo.step()
            intake.now += STEP_SECONDS
    return demo


def _activities(intake: FakeIntake) -> dict[str, list[tuple[float, Any]]]:
    by_lead: dict[str, list[tuple[float, Any]]] = {}
    for at, method, path, body in intake.sent:
        if method == "POST" and path.endswith("/activities") and body["type"] in ("accepted", "contacted"):
            by_lead.setdefault(path.split("/")[3], []).append((at, body))
    return by_lead


def test_owners_accept_a_share_of_the_leads_later_and_contact_most_of_them(intake: FakeIntake) -> None:
    demo = _run(intake, steps=400, respond_share=0.5)

    responded = _activities(intake)
    leads = demo.considered
    assert 0.3 < len(responded) / len(leads) < 0.7, (len(responded), len(leads))
    assert not set(responded) & intake.unowned  # nobody owns a queued lead: nobody responds
    contacted = 0
    for lead_id, activities in responded.items():
        # Never at once (the SLA has started by then), and within the run's pace.
        assert RESPOND_AFTER * 0.5 <= activities[0][0] - intake.created[lead_id] <= RESPOND_AFTER * 3
        assert [body["type"] for _, body in activities] in (["accepted"], ["accepted", "contacted"])
        for _, body in activities:
            assert body["rep_id"] == intake.owners[lead_id]  # the owner GET /v1/leads/{id} named
            assert body["occurred_at"].endswith("+00:00")
            assert ("channel" in body) == (body["type"] == "contacted")
        contacted += len(activities) == 2
    assert contacted > len(responded) / 3
    assert all(answer.endswith(("200", "201", "202")) for answer in demo.tally.answers)


def test_a_lead_nobody_owns_is_looked_at_a_few_times_then_left(intake: FakeIntake) -> None:
    demo = _run(intake, steps=400, respond_share=1.0)

    lookups: dict[str, int] = {}
    for _, method, path, _ in intake.sent:
        if method == "GET":
            lookups[path.split("/")[3]] = lookups.get(path.split("/")[3], 0) + 1
    finished = {lead_id for lead_id in intake.unowned if lead_id in lookups and not demo_has_pending(demo, lead_id)}
    assert finished
    assert {lookups[lead_id] for lead_id in finished} == {OWNER_LOOKUPS}
    assert not set(_activities(intake)) & intake.unowned


def demo_has_pending(demo: Demo, lead_id: str) -> bool:
    return any(response.lead_id == lead_id for response in demo.responses)


def test_no_share_sends_the_mix_alone(intake: FakeIntake) -> None:
    _run(intake, steps=100, respond_share=0.0)

    assert not [path for _, method, path, _ in intake.sent if method == "GET"]
    assert not _activities(intake)


def _mix(intake: FakeIntake) -> list[tuple[str, str]]:
    return [
        (method, path)
        for _, method, path, body in intake.sent
        if method != "GET" and not (path.endswith("/activities") and body["type"] in ("accepted", "contacted"))
    ]


def test_responses_take_steps_but_leave_a_seeded_mix_as_it_was(intake: FakeIntake) -> None:
    _run(intake, steps=150, respond_share=0.0)
    alone = _mix(intake)
    intake.__init__()  # type: ignore[misc]
    _run(intake, steps=150, respond_share=1.0)
    with_responses = _mix(intake)

    assert _activities(intake)
    assert len(with_responses) < len(alone)
    assert with_responses == alone[: len(with_responses)]
