"""`routing.route`, table-driven and pure: actions, fallbacks, availability reasons, exclusions, caps, explanations."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from leadrelay.calendar import TeamCalendar
from router.assignments.models import Outcome
from router.assignments.routing import MemoryChooser, Roster, Routing, Skip, StepOutcome, route
from router.reps.availability import Unavailable
from router.reps.models import Rep
from router.rules.document import RoutingDocument
from router.rules.engine import compile_rules

WEEKDAYS_9_TO_17 = {day: [{"start": "09:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")}
ALWAYS = {day: [{"start": "00:00", "end": "24:00"}] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
BERLIN = TeamCalendar.from_payload(
    timezone="Europe/Berlin", working_hours=WEEKDAYS_9_TO_17, holiday_calendar={"country": "DE", "subdivision": "BE"}
)
NEW_YORK = TeamCalendar.from_payload(
    timezone="America/New_York", working_hours=WEEKDAYS_9_TO_17, holiday_calendar={"country": "US", "subdivision": None}
)
OPEN = TeamCalendar.from_payload(timezone="Europe/London", working_hours=ALWAYS, holiday_calendar=None)
WEDNESDAY = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
QUEUE = {"type": "queue", "team": "open"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rep(rep_id: str, team: str = "open", **fields: Any) -> Rep:
    return Rep(id=rep_id, name=rep_id.title(), teams=[team], **fields)


def roster(*reps: Rep, daily: dict[str, dict[date, int]] | None = None) -> Roster:
    calendars = {"open": OPEN, "berlin": BERLIN, "new-york": NEW_YORK}
    members = {team: sorted(r.id for r in reps if team in r.teams) for team in calendars}
    return Roster(
        reps={r.id: r for r in reps},
        calendars=calendars,
        members=members,
        managers={"open": "rep-boss"},
        daily=daily if daily is not None else {},
    )


def ruleset(action: dict[str, Any], otherwise: dict[str, Any] | None = None, *, rules_before: int = 0) -> Any:
    before = [
        {"name": f"miss-{n}", "when": {"field": "lead.source", "equals": f"nope-{n}"}, "action": QUEUE}
        for n in range(rules_before)
    ]
    last: dict[str, Any] = {"name": "catch_all", "when": "always", "action": action}
    if otherwise is not None:
        last["otherwise"] = otherwise
    return compile_rules(RoutingDocument.model_validate({"rules": [*before, last]}), version="t")


async def decide(
    action: dict[str, Any],
    otherwise: dict[str, Any] | None,
    team: Roster,
    *,
    at: datetime = WEDNESDAY,
    facts: dict[str, Any] | None = None,
    chooser: MemoryChooser | None = None,
    **options: Any,
) -> Routing:
    facts = facts or {"lead.source": "web"}
    rules = ruleset(action, otherwise)
    return await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=chooser or MemoryChooser(),
                       at=at, **options)  # fmt: skip


def outcomes(routing: Routing) -> list[StepOutcome]:
    return [step.outcome for step in routing.steps]


def skipped(routing: Routing) -> list[tuple[str, str]]:
    return [(entry.rep_id, entry.reason) for step in routing.steps for entry in step.skipped]


OWNER_THEN_TEAM = ({"type": "account_owner"}, {"type": "team", "team": "open", "otherwise": QUEUE})

ACCOUNT_OWNER_CASES = [
    ("owner present and available", "rep-owner", {}, "rep-owner", [StepOutcome.CHOSEN], []),
    ("no owner: the team", None, {}, "rep-other", [StepOutcome.NO_ACCOUNT_OWNER, StepOutcome.CHOSEN], []),
    (
        "owner toggled off: the team",
        "rep-owner",
        {"available": False},
        "rep-other",
        [StepOutcome.NOBODY_AVAILABLE, StepOutcome.CHOSEN],
        [("rep-owner", Unavailable.TOGGLED_OFF)],
    ),
    (
        "owner unknown to the router: the team",
        "rep-gone",
        {},
        "rep-other",
        [StepOutcome.NOBODY_AVAILABLE, StepOutcome.CHOSEN],
        [("rep-gone", Skip.UNKNOWN_REP)],
    ),
]


@pytest.mark.parametrize(
    ("owner", "owner_fields", "chosen", "steps", "skips"),
    [case[1:] for case in ACCOUNT_OWNER_CASES],
    ids=[case[0] for case in ACCOUNT_OWNER_CASES],
)
async def test_account_owner_or_its_fallback(
    owner: str | None, owner_fields: dict[str, Any], chosen: str, steps: list[StepOutcome], skips: list[Any]
) -> None:
    team = roster(rep("rep-owner", "berlin", **owner_fields), rep("rep-other"))
    routing = await decide(*OWNER_THEN_TEAM, team, facts={"account.owner_rep_id": owner})

    assert (routing.outcome, routing.rep_id) == (Outcome.ASSIGNED, chosen)
    assert outcomes(routing) == steps
    assert skipped(routing) == skips


@pytest.mark.parametrize(
    ("weights", "leads", "expected"),
    [
        ((1.0, 1.0, 1.0), 9, {"rep-a": 3, "rep-b": 3, "rep-c": 3}),
        ((2.0, 1.0, 1.0), 8, {"rep-a": 4, "rep-b": 2, "rep-c": 2}),
        ((1.5, 0.5, 1.0), 6, {"rep-a": 3, "rep-b": 1, "rep-c": 2}),
    ],
)
async def test_pool_weighted_round_robin_shares_by_weight(
    weights: tuple[float, ...], leads: int, expected: dict[str, int]
) -> None:
    team = roster(*(rep(f"rep-{name}", weight=weight) for name, weight in zip("abc", weights, strict=True)))
    chooser = MemoryChooser()
    pool = {"type": "pool", "reps": ["rep-a", "rep-b", "rep-c"], "strategy": "weighted_round_robin"}

    chosen = [(await decide(pool, QUEUE, team, chooser=chooser)).rep_id for _ in range(leads)]

    assert Counter(chosen) == expected


async def test_least_loaded_takes_the_rep_with_fewest_leads_this_week_then_counts_the_new_one() -> None:
    today = WEDNESDAY.date()
    loads = {"rep-a": {today: 3}, "rep-b": {today - timedelta(days=2): 1}, "rep-c": {today: 2}}
    team = roster(rep("rep-a"), rep("rep-b"), rep("rep-c"), daily=loads)
    pool = {"type": "pool", "reps": ["rep-a", "rep-b", "rep-c"], "strategy": "least_loaded"}
    chooser = MemoryChooser()

    first = await decide(pool, QUEUE, team, chooser=chooser)
    second = await decide(pool, QUEUE, team, chooser=chooser)

    assert first.rep_id == "rep-b"
    assert second.rep_id == "rep-c"  # rep-b's new lead counted at once: rep-b and rep-c at 2, rep-c waited longer


async def test_team_picks_among_its_members_and_an_unknown_team_falls_back() -> None:
    team = roster(rep("rep-a"), rep("rep-b"), rep("rep-berlin", "berlin"))
    chooser = MemoryChooser()

    picks = [(await decide({"type": "team", "team": "open"}, QUEUE, team, chooser=chooser)).rep_id for _ in range(4)]
    unknown = await decide({"type": "team", "team": "nowhere"}, QUEUE, team)

    assert picks == ["rep-a", "rep-b", "rep-a", "rep-b"]
    assert outcomes(unknown) == [StepOutcome.UNKNOWN_TEAM, StepOutcome.QUEUED]
    assert (unknown.outcome, unknown.team_id) == (Outcome.QUEUED, "open")


async def test_named_rep_takes_the_lead_and_its_team_is_recorded() -> None:
    routing = await decide({"type": "rep", "rep": "rep-b"}, QUEUE, roster(rep("rep-a"), rep("rep-b", "berlin")),
                           at=utc("2026-06-10T10:00"))  # fmt: skip

    assert (routing.outcome, routing.rep_id, routing.team_id) == (Outcome.ASSIGNED, "rep-b", "berlin")
    assert routing.candidates == ["rep-b"]


async def test_queue_and_nurture_take_every_lead() -> None:
    team = roster(rep("rep-a"))
    queued = await decide({"type": "queue", "team": "berlin"}, None, team)
    nurture = {"type": "nurture", "reason": "weak fit"}
    rules = compile_rules(
        RoutingDocument.model_validate(
            {
                "rules": [
                    {"name": "weak", "when": {"field": "score.mql", "equals": False}, "action": nurture},
                    {"name": "catch_all", "when": "always", "action": QUEUE},
                ]
            }
        ),
        version="t",
    )
    facts = {"score.mql": False}
    nurtured = await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=MemoryChooser(),
                           at=WEDNESDAY)  # fmt: skip

    assert (queued.outcome, queued.team_id, queued.rep_id) == (Outcome.QUEUED, "berlin", None)
    assert (nurtured.outcome, nurtured.nurture_reason, nurtured.rep_id) == (Outcome.NURTURED, "weak fit", None)
    assert nurtured.decision.rule == "weak"


async def test_a_fallback_chain_is_walked_in_order_until_one_takes_the_lead() -> None:
    team = roster(rep("rep-named", available=False), rep("rep-p1", active=False), rep("rep-p2", "berlin"))
    chain = {"type": "pool", "reps": ["rep-p1", "rep-p2"], "otherwise": {"type": "team", "team": "berlin",
             "otherwise": QUEUE}}  # fmt: skip
    saturday = utc("2026-06-13T10:00")  # Berlin is closed, "open" works every day

    routing = await decide({"type": "rep", "rep": "rep-named"}, chain, team, at=saturday)

    assert outcomes(routing) == [StepOutcome.NOBODY_AVAILABLE] * 3 + [StepOutcome.QUEUED]
    assert skipped(routing) == [
        ("rep-named", Unavailable.TOGGLED_OFF),
        ("rep-p1", Unavailable.INACTIVE),
        ("rep-p2", Unavailable.OUTSIDE_HOURS),
        ("rep-p2", Unavailable.OUTSIDE_HOURS),
    ]
    assert [step.index for step in routing.steps] == [0, 1, 2, 3]
    assert (routing.outcome, routing.team_id) == (Outcome.QUEUED, "open")


MONDAY = date(2026, 6, 8)
# 2026: Berlin springs forward on Sun 29 March and falls back on Sun 25 October; New York on Sun 8
# March and Sun 1 November. The same UTC time of day is on one side of opening before a change
# and on the other after it.
AVAILABILITY_CASES: list[tuple[str, str, dict[str, Any], dict[date, int], str, str | None]] = [
    ("available", "open", {}, {}, "2026-06-10T12:00", None),
    ("inactive", "open", {"active": False}, {}, "2026-06-10T12:00", Unavailable.INACTIVE),
    ("toggled off", "open", {"available": False}, {}, "2026-06-10T12:00", Unavailable.TOGGLED_OFF),
    (
        "out of office",
        "open",
        {"out_of_office": [{"start": "2026-06-09T00:00:00+00:00", "end": "2026-06-11T00:00:00+00:00"}]},
        {},
        "2026-06-10T12:00",
        Unavailable.OUT_OF_OFFICE,
    ),
    (
        "back from office",
        "open",
        {"out_of_office": [{"start": "2026-06-09T00:00:00+00:00", "end": "2026-06-10T12:00:00+00:00"}]},
        {},
        "2026-06-10T12:00",
        None,
    ),
    ("daily cap reached", "open", {"daily_cap": 2}, {date(2026, 6, 10): 2}, "2026-06-10T12:00", Unavailable.DAILY_CAP),
    (
        "daily cap: yesterday's leads do not count",
        "open",
        {"daily_cap": 2},
        {date(2026, 6, 9): 5},
        "2026-06-10T12:00",
        None,
    ),
    (
        "weekly cap reached",
        "open",
        {"weekly_cap": 4},
        {MONDAY: 3, date(2026, 6, 9): 1},
        "2026-06-10T12:00",
        Unavailable.WEEKLY_CAP,
    ),
    (
        "weekly cap: last week's leads do not count",
        "open",
        {"weekly_cap": 4},
        {date(2026, 6, 7): 9},
        "2026-06-10T12:00",
        None,
    ),
    ("Berlin Fri before spring, 08:30 CET", "berlin", {}, {}, "2026-03-27T07:30", Unavailable.OUTSIDE_HOURS),
    ("Berlin Fri before spring, 09:30 CET", "berlin", {}, {}, "2026-03-27T08:30", None),
    ("Berlin Mon after spring, 09:30 CEST", "berlin", {}, {}, "2026-03-30T07:30", None),
    ("Berlin Mon after spring, 08:30 CEST", "berlin", {}, {}, "2026-03-30T06:30", Unavailable.OUTSIDE_HOURS),
    ("Berlin Fri before autumn, 09:30 CEST", "berlin", {}, {}, "2026-10-23T07:30", None),
    ("Berlin Mon after autumn, 08:30 CET", "berlin", {}, {}, "2026-10-26T07:30", Unavailable.OUTSIDE_HOURS),
    ("Berlin Mon after autumn, 16:30 CET", "berlin", {}, {}, "2026-10-26T15:30", None),
    ("New York Fri before spring, 08:30 EST", "new-york", {}, {}, "2026-03-06T13:30", Unavailable.OUTSIDE_HOURS),
    ("New York Mon after spring, 09:30 EDT", "new-york", {}, {}, "2026-03-09T13:30", None),
    ("New York Fri before autumn, 09:30 EDT", "new-york", {}, {}, "2026-10-30T13:30", None),
    ("New York Mon after autumn, 08:30 EST", "new-york", {}, {}, "2026-11-02T13:30", Unavailable.OUTSIDE_HOURS),
    ("Berlin Easter Monday", "berlin", {}, {}, "2026-04-06T10:00", Unavailable.HOLIDAY),
    ("New York Independence Day observed", "new-york", {}, {}, "2026-07-03T15:00", Unavailable.HOLIDAY),
    ("Berlin on the US holiday", "berlin", {}, {}, "2026-07-03T10:00", None),
]


@pytest.mark.parametrize(
    ("team_id", "fields", "given", "at", "reason"),
    [case[1:] for case in AVAILABILITY_CASES],
    ids=[case[0] for case in AVAILABILITY_CASES],
)
async def test_an_unavailable_rep_is_skipped_with_its_reason_recorded(
    team_id: str, fields: dict[str, Any], given: dict[date, int], at: str, reason: str | None
) -> None:
    team = roster(rep("rep-a", team_id, **fields), daily={"rep-a": dict(given)})

    routing = await decide({"type": "rep", "rep": "rep-a"}, QUEUE, team, at=utc(at))

    if reason is None:
        assert (routing.outcome, routing.rep_id, skipped(routing)) == (Outcome.ASSIGNED, "rep-a", [])
    else:
        assert skipped(routing) == [("rep-a", reason)]
        assert routing.outcome == Outcome.QUEUED
        assert routing.as_dict()["steps"][0]["skipped"] == [{"rep_id": "rep-a", "reason": reason}]


async def test_reps_who_held_the_lead_are_excluded() -> None:
    team = roster(rep("rep-a"), rep("rep-b"), rep("rep-c"))

    routing = await decide({"type": "team", "team": "open"}, QUEUE, team, exclude=frozenset({"rep-a", "rep-b"}),
                           reassigning=True)  # fmt: skip

    assert routing.rep_id == "rep-c"
    assert skipped(routing) == [("rep-a", Skip.HELD_BEFORE), ("rep-b", Skip.HELD_BEFORE)]


@pytest.mark.parametrize(
    "last",
    [QUEUE, {"type": "queue", "team": "berlin"}],
)
async def test_reassigning_passes_over_queues_and_runs_out_for_the_manager(last: dict[str, Any]) -> None:
    team = roster(rep("rep-a"))
    chain = {"type": "team", "team": "open", "otherwise": last}

    routing = await decide({"type": "rep", "rep": "rep-a"}, chain, team, exclude=frozenset({"rep-a"}),
                           reassigning=True)  # fmt: skip

    assert outcomes(routing) == [StepOutcome.NOBODY_AVAILABLE, StepOutcome.NOBODY_AVAILABLE,
                                 StepOutcome.NOT_FOR_REASSIGNMENT]  # fmt: skip
    assert (routing.outcome, routing.rep_id) == (None, None)


async def test_reassigning_passes_over_nurture() -> None:
    nurture_rule = {"name": "weak", "when": {"field": "score.mql", "equals": False},
                    "action": {"type": "rep", "rep": "rep-a"}, "otherwise": {"type": "nurture"}}  # fmt: skip
    rules = compile_rules(
        RoutingDocument.model_validate({"rules": [nurture_rule, {"name": "all", "when": "always", "action": QUEUE}]}),
        version="t",
    )
    facts = {"score.mql": False}
    team = roster(rep("rep-a"))

    routing = await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=MemoryChooser(),
                          at=WEDNESDAY, exclude=frozenset({"rep-a"}), reassigning=True)  # fmt: skip
    routed = await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=MemoryChooser(),
                         at=WEDNESDAY, exclude=frozenset({"rep-a"}))  # fmt: skip

    assert outcomes(routing) == [StepOutcome.NOBODY_AVAILABLE, StepOutcome.NOT_FOR_REASSIGNMENT]
    assert routing.outcome is None
    assert routed.outcome == Outcome.NURTURED


async def test_caps_hold_within_one_batch_as_each_pick_is_counted_at_once() -> None:
    team = roster(rep("rep-a", daily_cap=2, weekly_cap=10), rep("rep-b", daily_cap=1))
    chooser = MemoryChooser()
    pool = {"type": "pool", "reps": ["rep-a", "rep-b"]}

    routings = [await decide(pool, QUEUE, team, chooser=chooser) for _ in range(5)]

    assert [r.rep_id for r in routings] == ["rep-a", "rep-b", "rep-a", None, None]
    assert skipped(routings[-1]) == [("rep-a", Unavailable.DAILY_CAP), ("rep-b", Unavailable.DAILY_CAP)]
    assert team.counts("rep-a", WEDNESDAY).today == 2
    assert team.counts("rep-a", WEDNESDAY + timedelta(days=1)).week == 2  # the next day: a fresh daily cap


async def test_the_explanation_is_bounded_by_limit_and_keeps_the_matched_rule_and_chosen_rep() -> None:
    reps = [rep(f"rep-{n:02d}", available=n % 3 != 0) for n in range(30)]
    team = roster(*reps)
    rules = ruleset({"type": "team", "team": "open"}, QUEUE, rules_before=40)
    facts = {"lead.source": "web"}
    chooser = MemoryChooser()
    for _ in range(7):  # move the rotation on, so the chosen rep is not the first candidate
        await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=chooser, at=WEDNESDAY)

    routing = await route(decision=rules.evaluate(facts), facts=facts, roster=team, chooser=chooser, at=WEDNESDAY)
    bounded = routing.as_dict(limit=5)
    full = routing.as_dict()

    assert len(full["evaluated"]) == 41
    assert len(bounded["evaluated"]) == 5
    assert bounded["evaluated"][-1]["rule"] == "catch_all"
    assert bounded["evaluated_omitted"] == 36
    step = bounded["steps"][0]
    assert len(step["skipped"]) == 5
    assert step["skipped_omitted"] == 5
    assert len(step["pick"]["candidates"]) == 5
    assert step["pick"]["candidates_omitted"] == 15
    assert [c["rep_id"] for c in step["pick"]["candidates"] if c["chosen"]] == [routing.rep_id]
    assert routing.rep_id not in [c["rep_id"] for c in full["steps"][0]["pick"]["candidates"][:4]]
