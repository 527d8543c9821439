"""Seeding demo data against fake APIs: agreements drafted and approved once, teams and reps before routing."""

import json
from typing import Any

import httpx
import yaml

from leadrelay.agreements import yamlio
from leadrelay.demo import DEMO_RECEIVER_SECRET
from leadrelay.seeding import DEMO_AGREEMENTS, DEMO_ROSTER, DEV_KEY, MARKETING_KEY, SALES_KEY, seed_all

KEYS = {DEV_KEY.default: ("key_development", "ops"), MARKETING_KEY.default: ("key_demo_marketing", "marketing")}
KEYS[SALES_KEY.default] = ("key_demo_sales", "sales")
URLS = {"scoring": "http://scoring", "router": "http://router", "sla-monitor": "http://sla-monitor"}
NOTES = {
    agreement.kind: yamlio.load(agreement.file.read_text(encoding="utf-8"))["note"] for agreement in DEMO_AGREEMENTS
}
APPROVERS = {"icp": {"marketing", "sales"}, "routing": {"sales"}, "sla": {"marketing", "sales"}}
# routing: any_of(sales, ops), not the author; icp and sla: all_of(marketing, sales)
ROSTER = yaml.safe_load(DEMO_ROSTER.read_text(encoding="utf-8"))
ICP_LINE = "  icp seeded   v1 active: icp.yaml approved by marketing, sales"
TEAMS_LINE = (
    "  teams seeded team-na, team-emea; rep-default, rep-grace, rep-alan, rep-ada (5 new), "
    "each told at http://127.0.0.1:8010/reps/<id>"
)
ROUTING_LINE = "  routing seeded v1 active: routing.yaml approved by sales"
SLA_LINE = "  sla seeded   v1 active: sla.yaml approved by marketing, sales"


class FakeStack:
    """The agreements APIs (one per kind), router's teams and reps, as far as seeding uses them."""

    def __init__(self, *, known: bool = True, refuse_reps: bool = False) -> None:
        self.versions: dict[str, list[dict[str, Any]]] = {"icp": [], "routing": [], "sla": []}
        self.known = known
        self.refuse_reps = refuse_reps
        self.calls: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {"router": {"rep-default": {"name": "Default rep"}}}

    def version(self, kind: str, *, status: str, note: str, author: str, teams: list[str]) -> dict[str, Any]:
        version = {"version": len(self.versions[kind]) + 1, "status": status, "note": note}
        version.update({"author": {"key_id": author}, "approved_teams": teams})
        self.versions[kind].insert(0, version)
        return version

    def handle(self, request: httpx.Request) -> httpx.Response:
        key = KEYS.get(request.headers["Authorization"].removeprefix("Bearer "))
        if key is None or not self.known:
            return httpx.Response(401, json={"detail": "A valid API key is required"})
        path = request.url.path
        self.calls.append(f"{request.method} {request.url.host}{path} {key[1]}")
        if path == "/v1/whoami":
            return httpx.Response(200, json={"id": key[0], "team": key[1]})
        if request.method == "PUT":
            return self.put(path, json.loads(request.content))
        kind = path.split("/")[2]
        if request.method == "GET" and path.endswith("/versions"):
            return httpx.Response(200, json={"versions": self.versions[kind]})
        if path.endswith("/versions:import"):
            assert request.headers["Content-Type"] == "application/yaml"
            assert f"kind: {kind}" in request.content.decode()
            draft = self.version(kind, status="draft", note=NOTES[kind], author=key[0], teams=[])
            return httpx.Response(201, json=draft)
        number = int(path.split("/")[4])
        version = next(version for version in self.versions[kind] if version["version"] == number)
        assert json.loads(request.content) == {"note": "Seeded for the demo by make run."}
        assert key[0] != version["author"]["key_id"], "the author may not approve its own version"
        teams = version["approved_teams"]
        teams.extend([] if key[1] in teams else [key[1]])
        version["status"] = "active" if set(teams) >= APPROVERS[kind] else "draft"
        return httpx.Response(200, json=version)

    def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        _, _, collection, row_id = path.split("/")
        if collection == "reps":
            if self.refuse_reps:
                return httpx.Response(422, json={"detail": "teams: team-na does not exist"})
            assert all(f"teams/{team}" in self.rows["router"] or team == "default" for team in body["teams"])
        created = f"{collection}/{row_id}" not in self.rows["router"] and row_id != "rep-default"
        self.rows["router"][f"{collection}/{row_id}"] = body
        return httpx.Response(201 if created else 200, json={"id": row_id, **body})


async def _seed(fake: FakeStack, **options: Any) -> list[str]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as client:
        return [line async for line in seed_all(client, urls=URLS, settings=options.pop("settings", {}), **options)]


def _posts_and_puts(fake: FakeStack) -> list[str]:
    return [call for call in fake.calls if call.startswith(("POST", "PUT"))]


async def test_the_icp_then_the_teams_and_reps_then_the_routing_rules_that_name_them() -> None:
    fake = FakeStack()

    assert await _seed(fake) == [ICP_LINE, TEAMS_LINE, ROUTING_LINE, SLA_LINE]

    assert _posts_and_puts(fake) == [
        "POST scoring/v1/icp/versions:import ops",
        "POST scoring/v1/icp/versions/1/approvals marketing",
        "POST scoring/v1/icp/versions/1/approvals sales",
        "PUT router/v1/teams/team-na ops",
        "PUT router/v1/teams/team-emea ops",
        "PUT router/v1/reps/rep-default ops",
        "PUT router/v1/reps/rep-grace ops",
        "PUT router/v1/reps/rep-alan ops",
        "PUT router/v1/reps/rep-ada ops",
        "POST router/v1/routing/versions:import ops",
        "POST router/v1/routing/versions/1/approvals sales",
        "POST sla-monitor/v1/sla/versions:import ops",
        "POST sla-monitor/v1/sla/versions/1/approvals marketing",
        "POST sla-monitor/v1/sla/versions/1/approvals sales",
    ]


async def test_every_rep_is_told_at_the_receiver_with_its_secret_and_rep_default_is_put_over_the_builtin() -> None:
    fake = FakeStack()

    await _seed(fake, settings={"LEADRELAY_RECEIVER_PORT": "18110"})

    reps = {key: row for key, row in fake.rows["router"].items() if key.startswith("reps/")}
    assert set(reps) == {f"reps/{rep_id}" for rep_id in ROSTER["reps"]}
    for key, rep in reps.items():
        rep_id = key.removeprefix("reps/")
        assert rep["channels"] == [
            {"kind": "webhook", "url": f"http://127.0.0.1:18110/reps/{rep_id}", "secret": DEMO_RECEIVER_SECRET}
        ]
    assert reps["reps/rep-default"]["teams"] == ["default", "team-na"]


async def test_a_receiver_secret_the_user_chose_signs_the_channels_and_stays_out_of_the_banner() -> None:
    fake = FakeStack()
    chosen = "whsec_" + "bXlfb3duX3JlY2VpdmVyX3NlY3JldA=="

    lines = await _seed(fake, settings={"LEADRELAY_RECEIVER_SECRET": chosen})

    assert fake.rows["router"]["reps/rep-grace"]["channels"][0]["secret"] == chosen
    assert not any(chosen in line or DEMO_RECEIVER_SECRET in line for line in lines)


async def test_routing_is_not_seeded_when_the_teams_and_reps_could_not_be() -> None:
    fake = FakeStack(refuse_reps=True)

    lines = await _seed(fake)

    assert lines == [
        ICP_LINE,
        "  teams seeded not seeded: put rep rep-default: HTTP 422 teams: team-na does not exist",
        "  routing seeded not seeded: it names the demo teams and reps",
        SLA_LINE,  # the SLA names no team or rep: it is seeded all the same
    ]
    assert not [call for call in fake.calls if "/routing/" in call]


async def test_an_active_version_is_left_alone() -> None:
    fake = FakeStack()
    fake.version(
        "icp", status="active", note="Agreed in the Q3 review", author="key_3f9a", teams=["marketing", "sales"]
    )
    fake.version("routing", status="active", note="Ours", author="key_3f9a", teams=["ops"])
    fake.version("sla", status="active", note="Ours", author="key_3f9a", teams=["marketing", "sales"])

    lines = await _seed(fake)

    assert lines[0] == "  icp seeded   v1 already active (left alone)"
    assert lines[2] == "  routing seeded v1 already active (left alone)"
    assert lines[3] == "  sla seeded   v1 already active (left alone)"
    assert not [call for call in fake.calls if call.startswith("POST")]


async def test_a_draft_an_interrupted_run_left_is_approved_not_drafted_again() -> None:
    fake = FakeStack()
    fake.version("icp", status="draft", note=NOTES["icp"], author="key_development", teams=["marketing"])

    assert (await _seed(fake))[0] == ICP_LINE
    assert not [call for call in fake.calls if call.startswith("POST scoring/v1/icp/versions:import")]


async def test_a_service_that_never_knows_the_keys_gives_up_at_the_deadline_and_says_so() -> None:
    lines = await _seed(FakeStack(known=False), timeout=0.3)

    assert lines == [
        "  icp seeded   not seeded: http://scoring did not know the demo keys in time",
        "  teams seeded not seeded: http://router did not know the demo keys in time",
        "  routing seeded not seeded: it names the demo teams and reps",
        "  sla seeded   not seeded: http://sla-monitor did not know the demo keys in time",
    ]
    assert not any(DEV_KEY.default in line for line in lines)


def test_the_seeded_files_exist_and_name_their_kind() -> None:
    for agreement in DEMO_AGREEMENTS:
        assert f"kind: {agreement.kind}\n" in agreement.file.read_text(encoding="utf-8")
        assert agreement.drafter not in agreement.approvers  # an author may not approve its own version


def test_the_demo_rules_name_only_seeded_teams_and_reps_and_some_team_works_around_the_clock() -> None:
    routing = next(agreement for agreement in DEMO_AGREEMENTS if agreement.kind == "routing")
    rules = yamlio.load(routing.file.read_text(encoding="utf-8"))["document"]["rules"]
    named: set[str] = set()

    def walk(action: dict[str, Any] | None) -> None:
        while action is not None:
            named.update(action.get("reps", []))
            named.update(value for key, value in action.items() if key in ("team", "rep"))
            action = action.get("otherwise")

    for rule in rules:
        walk(rule["action"])
        walk(rule.get("otherwise"))
    assert named <= set(ROSTER["teams"]) | set(ROSTER["reps"])
    assert {"team-emea", "team-na", "rep-grace", "rep-alan"} <= named
    all_day = [{"start": "00:00", "end": "24:00"}]
    assert any(
        len(team["working_hours"]) == 7 and all(hours == all_day for hours in team["working_hours"].values())
        for team in ROSTER["teams"].values()
    )


def test_the_demo_sla_is_co_signed_and_shows_a_warning_and_a_breach_within_minutes() -> None:
    sla = next(agreement for agreement in DEMO_AGREEMENTS if agreement.kind == "sla")
    assert (sla.service, sla.drafter, sla.approvers) == ("sla-monitor", DEV_KEY, (MARKETING_KEY, SALES_KEY))
    exported = yamlio.load(sla.file.read_text(encoding="utf-8"))
    assert exported["kind"] == "sla"
    minutes = {"m": 1, "s": 1 / 60}
    for obligation in exported["document"]["obligations"]:
        windows = [str(target["within"]) for target in obligation["targets"]]
        # minutes, not hours: a demo run shows the warning (at warn_at of the window) and the breach
        assert all(window[-1] in minutes and float(window[:-1]) * minutes[window[-1]] <= 10 for window in windows)
        assert obligation["warn_at"] <= 0.5
        assert obligation["escalation"]
