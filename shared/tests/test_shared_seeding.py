"""Seeding demo agreements against a fake agreements API: drafted and approved once, left alone after."""

import json
from typing import Any

import httpx

from leadrelay.agreements import yamlio
from leadrelay.seeding import DEMO_AGREEMENTS, DEV_KEY, MARKETING_KEY, SALES_KEY, seed_all

KEYS = {DEV_KEY.default: ("key_development", "ops"), MARKETING_KEY.default: ("key_demo_marketing", "marketing")}
KEYS[SALES_KEY.default] = ("key_demo_sales", "sales")
URLS = {"scoring": "http://scoring"}
SEED_NOTE = yamlio.load(DEMO_AGREEMENTS[0].file.read_text(encoding="utf-8"))["note"]


class FakeAgreements:
    """The agreements API of one kind, as far as seeding uses it; `known` keys answer whoami."""

    def __init__(self, *, known: bool = True) -> None:
        self.versions: list[dict[str, Any]] = []
        self.known = known
        self.calls: list[str] = []

    def version(self, *, status: str, note: str, author: str, teams: list[str]) -> dict[str, Any]:
        version = {"version": len(self.versions) + 1, "status": status, "note": note}
        version.update({"author": {"key_id": author}, "approved_teams": teams})
        self.versions.insert(0, version)
        return version

    def handle(self, request: httpx.Request) -> httpx.Response:
        key = KEYS.get(request.headers["Authorization"].removeprefix("Bearer "))
        if key is None or not self.known:
            return httpx.Response(401, json={"detail": "A valid API key is required"})
        path = request.url.path
        self.calls.append(f"{request.method} {path} {key[1]}")
        if path == "/v1/whoami":
            return httpx.Response(200, json={"id": key[0], "team": key[1]})
        if request.method == "GET" and path == "/v1/icp/versions":
            return httpx.Response(200, json={"versions": self.versions})
        if path == "/v1/icp/versions:import":
            assert request.headers["Content-Type"] == "application/yaml"
            assert "kind: icp" in request.content.decode()
            return httpx.Response(201, json=self.version(status="draft", note=SEED_NOTE, author=key[0], teams=[]))
        number = int(path.split("/")[4])
        version = next(version for version in self.versions if version["version"] == number)
        assert json.loads(request.content) == {"note": "Seeded for the demo by make run."}
        teams = version["approved_teams"]
        teams.extend([] if key[1] in teams else [key[1]])
        version["status"] = "active" if set(teams) == {"marketing", "sales"} else "draft"
        return httpx.Response(200, json=version)


async def _seed(fake: FakeAgreements, **options: Any) -> list[str]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as client:
        return await seed_all(client, urls=URLS, settings={}, **options)


async def test_the_demo_icp_is_drafted_by_ops_and_approved_by_marketing_and_sales() -> None:
    fake = FakeAgreements()

    assert await _seed(fake) == ["  icp seeded   v1 active: icp.yaml approved by marketing, sales"]

    assert [call for call in fake.calls if call.startswith("POST")] == [
        "POST /v1/icp/versions:import ops",
        "POST /v1/icp/versions/1/approvals marketing",
        "POST /v1/icp/versions/1/approvals sales",
    ]


async def test_an_active_version_is_left_alone() -> None:
    fake = FakeAgreements()
    fake.version(status="active", note="Agreed in the Q3 review", author="key_3f9a", teams=["marketing", "sales"])

    assert await _seed(fake) == ["  icp seeded   v1 already active (left alone)"]
    assert not [call for call in fake.calls if call.startswith("POST")]


async def test_a_draft_an_interrupted_run_left_is_approved_not_drafted_again() -> None:
    fake = FakeAgreements()
    fake.version(status="draft", note=SEED_NOTE, author="key_development", teams=["marketing"])

    assert await _seed(fake) == ["  icp seeded   v1 active: icp.yaml approved by marketing, sales"]
    assert not [call for call in fake.calls if call.startswith("POST /v1/icp/versions:import")]


async def test_a_service_that_never_knows_the_keys_gives_up_at_the_deadline_and_says_so() -> None:
    [line] = await _seed(FakeAgreements(known=False), timeout=0.3)

    assert line == "  icp seeded   not seeded: http://scoring did not know the demo keys in time"
    assert DEV_KEY.default not in line


def test_the_seeded_files_exist_and_name_their_kind() -> None:
    for agreement in DEMO_AGREEMENTS:
        assert f"kind: {agreement.kind}\n" in agreement.file.read_text(encoding="utf-8")
        assert agreement.drafter not in agreement.approvers  # an author may not approve its own version
