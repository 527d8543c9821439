"""Benchmark: one whole routing decision (the rule walk, then the action and its fallbacks over the roster).

Run: .venv/bin/python bench/routing_decision.py [--leads 20000] [--rules 500] [--teams 100] [--reps 5000]
It takes bench/routing_rules.py's synthetic ruleset and leads, points the rules' actions at ~100
teams of 50 reps each (teams, pools of up to 50 named reps, a named rep, the account owner, each
with a fallback chain ending in a queue), spreads the teams over eight timezones with working
hours and holiday calendars, gives a few reps caps, out-of-office windows or a toggle, and times
`rules.evaluate` plus `routing.route` with a `MemoryChooser` (no database) per lead, at instants
spread over a week. It prints p50, p99 and the worst, wall clock and the thread's CPU time
(target: p99 under 1 ms).
"""

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from routing_rules import percentiles, synthetic_lead, synthetic_rules

from leadrelay.calendar import TeamCalendar
from router.assignments.routing import MemoryChooser, Roster, route
from router.reps.models import Rep
from router.rules.document import RoutingDocument, check
from router.rules.engine import compile_rules, facts_of

ZONES = [
    ("Europe/London", "GB"),
    ("Europe/Berlin", "DE"),
    ("Europe/Paris", "FR"),
    ("America/New_York", "US"),
    ("America/Los_Angeles", "US"),
    ("Asia/Tokyo", "JP"),
    ("Australia/Sydney", "AU"),
    ("America/Sao_Paulo", "BR"),
]
WEEKDAYS_9_TO_1730 = {day: [{"start": "09:00", "end": "17:30"}] for day in ("mon", "tue", "wed", "thu", "fri")}
POOL_SIZE = 50


def roster_of(*, teams: int, reps: int, rng: random.Random, start: datetime) -> Roster:
    """`reps` reps spread over `teams` teams in eight timezones; a few capped, out of office or toggled off."""
    calendars = {}
    for number in range(teams):
        zone, country = ZONES[number % len(ZONES)]
        calendars[f"team-{number}"] = TeamCalendar.from_payload(
            timezone=zone, working_hours=WEEKDAYS_9_TO_1730, holiday_calendar={"country": country, "subdivision": None}
        )
    members: dict[str, list[str]] = {team: [] for team in calendars}
    by_id = {}
    for number in range(reps):
        team = f"team-{number % teams}"
        fields: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.03:
            fields["available"] = False
        elif roll < 0.06:
            leave = start + timedelta(days=rng.randrange(7))
            fields["out_of_office"] = [{"start": leave.isoformat(), "end": (leave + timedelta(days=2)).isoformat()}]
        elif roll < 0.12:
            fields["daily_cap"] = rng.randrange(5, 50)
            fields["weekly_cap"] = rng.randrange(50, 200)
        rep_id = f"rep-{number}"
        by_id[rep_id] = Rep(id=rep_id, name=f"Rep {number}", teams=[team], weight=rng.choice([1.0, 1.0, 1.5, 2.0]),
                            **fields)  # fmt: skip
        members[team].append(rep_id)
    return Roster(reps=by_id, calendars=calendars, members={team: sorted(ids) for team, ids in members.items()})


def with_actions(document: dict[str, Any], *, teams: int, reps: int, rng: random.Random) -> dict[str, Any]:
    """The synthetic rules with actions over the roster: teams, pools, named reps and account owners."""
    for number, rule in enumerate(document["rules"][:-1]):
        team = f"team-{number % teams}"
        queue = {"type": "queue", "team": team}
        strategy = rng.choice(["weighted_round_robin", "least_loaded"])
        kind = number % 4
        if kind == 0:
            rule["action"] = {"type": "team", "team": team, "strategy": strategy}
            rule["otherwise"] = queue
        elif kind == 1:
            pool = rng.sample(range(reps), rng.randrange(2, POOL_SIZE + 1))
            rule["action"] = {"type": "pool", "reps": [f"rep-{rep}" for rep in pool], "strategy": strategy}
            rule["otherwise"] = {"type": "team", "team": team, "strategy": strategy, "otherwise": queue}
        elif kind == 2:
            rule["action"] = {"type": "rep", "rep": f"rep-{rng.randrange(reps)}"}
            rule["otherwise"] = {"type": "team", "team": team, "strategy": strategy, "otherwise": queue}
        else:
            rule["action"] = {"type": "account_owner"}
            rule["otherwise"] = {"type": "team", "team": team, "strategy": strategy, "otherwise": queue}
    document["rules"][-1]["action"] = {"type": "team", "team": "team-0"}
    document["rules"][-1]["otherwise"] = {"type": "queue", "team": "team-0"}
    return document


async def timed(
    rules: Any, facts: list[dict[str, Any]], instants: list[datetime], roster: Roster, chooser: MemoryChooser
) -> tuple[list[int], list[int], dict[str, int]]:
    """Per-decision cost (rule walk + route) of every lead, wall clock and CPU, and how many leads each outcome took."""
    costs: list[int] = []
    cpu: list[int] = []
    outcomes: dict[str, int] = {}
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for one, at in zip(facts, instants, strict=True):
        started, cpu_started = clock(), cpu_clock()
        routing = await route(decision=rules.evaluate(one), facts=one, roster=roster, chooser=chooser, at=at)
        costs.append(clock() - started)
        cpu.append(cpu_clock() - cpu_started)
        key = "ran out" if routing.outcome is None else routing.outcome.value
        outcomes[key] = outcomes.get(key, 0) + 1
    return costs, cpu, outcomes


async def run(args: argparse.Namespace) -> list[str]:
    """Build the ruleset, roster and leads; time the decisions."""
    rng = random.Random(args.seed)
    start = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    document = RoutingDocument.model_validate(
        with_actions(synthetic_rules(args.rules, rng), teams=args.teams, reps=args.reps, rng=rng)
    )
    assert check(document) == [], check(document)
    rules = compile_rules(document, version="bench")
    roster = roster_of(teams=args.teams, reps=args.reps, rng=rng, start=start)
    scored = [synthetic_lead(rng, args.rules) for _ in range(args.leads)]
    facts = [facts_of(event) for event in scored]
    for one in facts[::2]:  # half the leads matched an account with an owner
        one["account.owner_rep_id"] = f"rep-{rng.randrange(args.reps)}"
    # One decision a lead, at instants spread over a week (open hours somewhere, closed elsewhere).
    instants = [start + timedelta(seconds=rng.randrange(7 * 24 * 3600)) for _ in scored]
    chooser = MemoryChooser()
    await timed(rules, facts[:2000], instants[:2000], roster, chooser)  # warm caches as a running router would
    costs, cpu, outcomes = await timed(rules, facts, instants, roster, chooser)
    shares = ", ".join(f"{name} {count * 100 / len(facts):.0f}%" for name, count in sorted(outcomes.items()))
    return [
        f"routing decision: {args.rules} rules, {args.reps} reps in {args.teams} teams; {args.leads} leads ({shares})",
        f"  rule walk + route, wall     {percentiles(costs)}",
        f"  rule walk + route, CPU      {percentiles(cpu)}  (this thread's CPU time: less moved by a busy machine)",
    ]


def main() -> None:
    """Time the decisions and print the percentiles."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    for line in asyncio.run(run(parser.parse_args())):
        print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    main()
