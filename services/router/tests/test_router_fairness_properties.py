"""Fairness properties of the pure rotation, over thousands of picks with reps joining and leaving (hypothesis)."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.fairness.rotation import (
    Candidate,
    Entry,
    Reason,
    Rotation,
    Strategy,
    choose,
    simulate,
)

WRR = Strategy.WEIGHTED_ROUND_ROBIN
FAST = settings(max_examples=40, deadline=None, database=None)
LONG = settings(max_examples=6, deadline=None, database=None)  # 10,000 picks take a few hundred milliseconds


def _reps(weights: Sequence[int]) -> list[Candidate]:
    return [Candidate(f"rep-{index:02d}", weight) for index, weight in enumerate(weights)]


@dataclass
class Run:
    """A rotation's picks, with the candidates of each pick."""

    picks: list[str]
    candidates: list[list[Candidate]]


def _run(schedule: Sequence[Sequence[Candidate]]) -> Run:
    rotation = Rotation()
    picks = [choose(rotation, pool_id="pool", candidates=c, strategy=WRR).rep_id for c in schedule]
    return Run(picks, [list(c) for c in schedule])


@dataclass(frozen=True)
class Plan:
    """A pool's reps by weight, who is there at first, and at which picks one rep leaves or (re)joins."""

    weights: tuple[int, ...]
    present: frozenset[int]
    length: int
    toggles: tuple[tuple[int, int], ...]

    def schedule(self) -> list[list[Candidate]]:
        """The candidates of each pick."""
        reps = _reps(self.weights)
        toggles = dict(self.toggles)
        present = set(self.present)
        schedule = []
        for step in range(self.length):
            if step in toggles:
                present ^= {toggles[step]}
                present = present or {toggles[step]}  # somebody is always available
            schedule.append([reps[index] for index in sorted(present)])
        return schedule


@st.composite
def _plans(draw: st.DrawFn, *, equal: bool) -> Plan:
    # Up to 8 reps over up to 600 picks; now and then one rep leaves or (re)joins.
    size = draw(st.integers(2, 8))
    weights = [1] * size if equal else draw(st.lists(st.integers(1, 6), min_size=size, max_size=size))
    present = draw(st.sets(st.integers(0, size - 1), min_size=1))
    length = draw(st.integers(50, 600))
    toggles = draw(st.dictionaries(st.integers(0, length - 1), st.integers(0, size - 1), max_size=25))
    return Plan(tuple(weights), frozenset(present), length, tuple(sorted(toggles.items())))


@LONG
@given(reps=st.integers(1, 12), picks=st.integers(1, 10_000))
def test_equal_weights_give_each_rep_n_over_k_within_one_at_every_point(reps: int, picks: int) -> None:
    candidates = _reps([1] * reps)
    counts: Counter[str] = Counter()
    for done, rep_id in enumerate(simulate([candidates] * picks), start=1):
        counts[rep_id] += 1
        assert all(abs(counts[c.rep_id] - Fraction(done, reps)) < 1 for c in candidates)


def test_ten_thousand_leads_among_seven_equal_reps() -> None:
    counts = Counter(simulate([_reps([1] * 7)] * 10_000))

    assert sorted(counts.values()) == [1428] * 3 + [1429] * 4


@FAST
@given(reps=st.integers(1, 10), rounds=st.integers(1, 30))
def test_equal_weights_never_give_a_rep_two_leads_within_one_round(reps: int, rounds: int) -> None:
    picks = simulate([_reps([1] * reps)] * (reps * rounds + reps // 2))

    for start in range(len(picks) - reps + 1):
        assert len(set(picks[start : start + reps])) == reps


@FAST
@given(weights=st.lists(st.integers(1, 20), min_size=1, max_size=8), picks=st.integers(1, 800))
def test_weighted_shares_stay_within_two_leads_of_their_weight(weights: list[int], picks: int) -> None:
    # Smooth weighted round robin's deviation is bounded; ties among heavy reps can take it just
    # past one lead (1.09 at worst in a search of thousands of pools), never near two.
    candidates = _reps(weights)
    total = sum(weights)
    counts: Counter[str] = Counter()
    for done, rep_id in enumerate(simulate([candidates] * picks), start=1):
        counts[rep_id] += 1
        assert all(abs(counts[c.rep_id] - Fraction(done * c.weight, total)) < 2 for c in candidates)


@FAST
@given(plan=_plans(equal=False))
def test_no_rep_gets_more_than_its_share_plus_one_in_any_round_while_reps_come_and_go(plan: Plan) -> None:
    # A round: as many picks as the candidates weigh, with the same candidates throughout. Its
    # share for a rep is its weight; the smooth rotation allows at most one more, even right after
    # a rep joined, came back or left.
    run = _run(plan.schedule())
    for start, candidates in enumerate(run.candidates):
        length = sum(c.weight for c in candidates)
        window = run.candidates[start : start + length]
        if len(window) < length or any(other != candidates for other in window):
            continue
        counts = Counter(run.picks[start : start + length])
        for candidate in candidates:
            assert counts[candidate.rep_id] <= candidate.weight + 1, (start, candidate)


@FAST
@given(plan=_plans(equal=True))
def test_with_equal_weights_nobody_is_served_twice_before_a_rep_present_all_along(plan: Plan) -> None:
    # Between two leads of one rep, every rep that was a candidate all the while got one: joining,
    # coming back or leaving never lets anyone jump the queue.
    run = _run(plan.schedule())
    last: dict[str, int] = {}
    for step, rep_id in enumerate(run.picks):
        if rep_id in last:
            between = range(last[rep_id], step + 1)
            steady = set.intersection(*({c.rep_id for c in run.candidates[i]} for i in between))
            served = set(run.picks[last[rep_id] + 1 : step])
            assert steady - {rep_id} <= served, (last[rep_id], step)
        last[rep_id] = step


@FAST
@given(stayed=st.integers(1, 9), warmup=st.integers(1, 40), newcomer_first=st.booleans())
def test_a_joining_rep_waits_its_turn_and_gets_no_burst(stayed: int, warmup: int, newcomer_first: bool) -> None:
    reps = _reps([1] * stayed)
    newcomer = Candidate("rep-00-new" if newcomer_first else "rep-99-new")
    rotation = Rotation()
    for _ in range(warmup):
        choose(rotation, pool_id="pool", candidates=reps, strategy=WRR)
    after = [choose(rotation, pool_id="pool", candidates=[*reps, newcomer], strategy=WRR) for _ in range(3 * stayed)]

    first = next(index for index, pick in enumerate(after) if pick.rep_id == newcomer.rep_id)
    # The back of the queue: after every rep that stayed, but maybe the one just served.
    assert stayed - 1 <= first <= stayed
    assert after[0].candidates[-1].entry is Entry.JOINED
    rounds = [after[start : start + stayed + 1] for start in range(len(after) - stayed)]
    assert all(sum(pick.rep_id == newcomer.rep_id for pick in round_) <= 1 for round_ in rounds)


@FAST
@given(
    weights=st.lists(st.integers(1, 6), min_size=2, max_size=8),
    before=st.integers(0, 60),
    data=st.data(),
)
def test_removing_a_rep_keeps_the_others_in_their_order(weights: list[int], before: int, data: st.DataObject) -> None:
    reps = _reps(weights)
    gone = data.draw(st.sampled_from(reps))
    rest = [rep for rep in reps if rep != gone]
    rotation = Rotation()
    for _ in range(before):
        choose(rotation, pool_id="pool", candidates=reps, strategy=WRR)
    credits = {rep.rep_id: member.credit if (member := rotation.members.get(rep.rep_id)) else 0 for rep in rest}
    order_before = sorted(rest, key=lambda rep: (-credits[rep.rep_id], rep.rep_id))

    pick = choose(rotation, pool_id="pool", candidates=rest, strategy=WRR)

    # Nobody's credit was touched by the departure: the pick compares what each rep had plus its share.
    compared = {c.rep_id: c.credit_before for c in pick.candidates}
    assert sorted(rest, key=lambda rep: (-compared[rep.rep_id], rep.rep_id)) == order_before


@FAST
@given(reps=st.integers(2, 9), before=st.integers(0, 40), data=st.data())
def test_with_equal_weights_removal_leaves_the_queue_as_it_was(reps: int, before: int, data: st.DataObject) -> None:
    everyone = _reps([1] * reps)
    gone = data.draw(st.sampled_from(everyone))
    rest = [rep for rep in everyone if rep != gone]
    unchanged = simulate([everyone] * (before + 2 * reps))
    changed = simulate([everyone] * before + [rest] * 2 * (reps - 1))

    expected = [rep_id for rep_id in unchanged[before:] if rep_id != gone.rep_id][: 2 * (reps - 1)]
    assert changed[before:] == expected


def test_least_loaded_takes_the_lowest_load_per_weight_then_the_rep_waiting_longest() -> None:
    rotation = Rotation()
    candidates = [Candidate("ann", weight=2, load=3), Candidate("bob", weight=1, load=1), Candidate("cy", 1, 2)]

    first = choose(rotation, pool_id="pool", candidates=candidates, strategy=Strategy.LEAST_LOADED)
    equal = [Candidate("ann", 1, 1), Candidate("bob", 1, 1), Candidate("cy", 1, 1)]
    ties = [choose(rotation, pool_id="pool", candidates=equal, strategy=Strategy.LEAST_LOADED) for _ in range(3)]

    assert first.rep_id == "bob"  # 1/1 beats 3/2 and 2/1
    assert {c.rep_id: c.reason for c in first.candidates} == {
        "ann": Reason.HIGHER_LOAD,
        "bob": Reason.LOWEST_LOAD,
        "cy": Reason.HIGHER_LOAD,
    }
    # Equal loads take turns: the rep waiting longest first, then by id.
    assert [pick.rep_id for pick in ties] == ["ann", "cy", "bob"]
    assert {c.rep_id: c.reason for c in ties[1].candidates} == {
        "ann": Reason.TIED_LOAD,
        "bob": Reason.TIED_LOAD,
        "cy": Reason.LOWEST_LOAD,
    }
    assert all(c.credit_compared is None for c in first.candidates)


def test_a_pick_explains_every_candidate() -> None:
    rotation = Rotation()
    pick = choose(rotation, pool_id="team-emea", candidates=_reps([1, 1, 2]), strategy=WRR)

    record = pick.as_record()

    assert record["rep_id"] == "rep-02"
    assert record["sequence"] == 0
    assert record["strategy"] == "weighted_round_robin"
    assert [(c["rep_id"], c["chosen"], c["reason"], c["entry"]) for c in record["candidates"]] == [
        ("rep-00", False, "lower_credit", "joined"),
        ("rep-01", False, "lower_credit", "joined"),
        ("rep-02", True, "highest_credit", "joined"),
    ]
    assert [c["credit_compared"] for c in record["candidates"]] == [0.25, 0.25, 0.5]
    assert [c["credit_after"] for c in record["candidates"]] == [0.25, 0.25, -0.5]


def test_ties_go_to_the_rep_waiting_longest_then_the_lowest_rep_id() -> None:
    rotation = Rotation()
    first = choose(rotation, pool_id="pool", candidates=_reps([1, 1]), strategy=WRR)
    second = choose(rotation, pool_id="pool", candidates=_reps([1, 1, 1]), strategy=WRR)  # rep-02 joins
    third = choose(rotation, pool_id="pool", candidates=_reps([1, 1, 1]), strategy=WRR)

    fourth = choose(rotation, pool_id="pool", candidates=_reps([1, 1, 1]), strategy=WRR)

    assert [pick.rep_id for pick in (first, second, third, fourth)] == ["rep-00", "rep-01", "rep-00", "rep-02"]
    assert first.candidates[1].reason is Reason.TIED_CREDIT_REP_ID
    # All three on equal credit: rep-00 and rep-02 wait since pick 1, rep-01 (served at pick 1) since pick 2.
    assert {c.credit_compared for c in third.candidates} == {third.candidates[0].credit_compared}
    assert [c.reason for c in third.candidates[1:]] == [Reason.TIED_CREDIT, Reason.TIED_CREDIT_REP_ID]
    # The newcomer goes before the rep served at the pick it joined.
    assert fourth.candidates[1].reason is Reason.TIED_CREDIT


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([], "at least one candidate"),
        ([Candidate("a"), Candidate("a")], "candidate twice"),
        ([Candidate("a", weight=0)], "weight must be at least 1"),
        ([Candidate("a", load=-1)], "load must not be negative"),
    ],
)
def test_bad_candidates_are_refused(candidates: list[Candidate], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose(Rotation(), pool_id="pool", candidates=candidates, strategy=WRR)
