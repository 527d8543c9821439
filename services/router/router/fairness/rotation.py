"""Fair rotation without I/O: smooth weighted round robin by credits, and least loaded; the database layer wraps it.

Weighted round robin is nginx's smooth weighted round robin, counted in leads: at every pick each
candidate's credit grows by its share of the pick (its weight over the candidates' total weight),
the highest credit wins (ties to the heavier rep, then to the one waiting longest, then to the
lowest rep id), and the winner pays one lead. With equal weights that is a strict rotation; with
weights w_i each rep's count stays within two leads of N * w_i / sum(w). Counting in leads rather
than in weights keeps a credit's meaning ("this much of a lead owed") when reps join or leave and
the total weight changes, so a departure never turns the credit of those who stay into a burst.

Credits are integers in units of 1/SCALE of a lead; only their differences matter, so after every
pick the candidates' credits are shifted together to keep their sum near zero. A rep earns credit
only at the picks it is a candidate for: who joins, or comes back after leave, out of office or a
toggle, is placed in the band of credits of the reps that stayed (`_place`), so nobody catches up
on leads handed out while they were away.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

SCALE = 232_792_560
"""Credit units per lead: the least common multiple of 1..22, so shares of pools weighing up to 22 are exact."""


class Strategy(StrEnum):
    """How a rotation chooses among its available reps."""

    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    LEAST_LOADED = "least_loaded"


class Reason(StrEnum):
    """Why a candidate was or was not chosen (a bounded vocabulary, fit for explanations and metric labels)."""

    HIGHEST_CREDIT = "highest_credit"
    LOWER_CREDIT = "lower_credit"
    TIED_CREDIT_WEIGHT = "tied_credit_lower_weight"  # as much credit as the chosen rep, who weighs more
    TIED_CREDIT = "tied_credit_waited_less"  # as much credit as the chosen rep, who has waited longer
    TIED_CREDIT_REP_ID = "tied_credit_rep_id"  # the same credit and wait as the chosen rep, whose id sorts first
    LOWEST_LOAD = "lowest_load"
    HIGHER_LOAD = "higher_load"
    TIED_LOAD = "tied_load_waited_less"  # the same load per weight as the chosen rep, who has waited longer
    TIED_LOAD_REP_ID = "tied_load_rep_id"  # the same load and wait as the chosen rep, whose id sorts first


class Entry(StrEnum):
    """How a candidate entered this pick: stayed since the last pick, joined for the first time, or came back."""

    STAYED = "stayed"
    JOINED = "joined"
    RETURNED = "returned"


@dataclass(frozen=True)
class Candidate:
    """A rep available right now, with its weight in the rotation and its current load (open leads)."""

    rep_id: str
    weight: int = 1
    load: int = 0


@dataclass
class Member:
    """A rep's place in one rotation."""

    credit: int = 0
    last_seen: int = -1
    """The rotation's pick number at which the rep was last a candidate (-1: never)."""
    last_won: int = -1
    """The rotation's pick number of the rep's last pick (-1: never)."""
    waiting_since: int = -1
    """The pick number from which the rep waits: the one after its last lead, or the one it joined or came back at.

    On equal credit (or load) the rep waiting longest goes first.
    """
    wins: int = 0


@dataclass
class Rotation:
    """One rotation's state: how many picks it made, and its members by rep id."""

    picks: int = 0
    members: dict[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class Considered:
    """One candidate of a pick, with what decided it."""

    rep_id: str
    weight: int
    load: int
    chosen: bool
    reason: Reason
    entry: Entry
    credit_before: int
    """The credit the rep entered the pick with, in units of 1/SCALE lead (after placing a joining or returning rep)."""
    credit_compared: int | None
    """The credit plus the rep's share of this pick, compared between candidates (weighted round robin only)."""
    credit_after: int
    """The credit stored after the pick."""

    def as_record(self) -> dict[str, Any]:
        """JSON-ready form for an assignment's explanation."""
        return {
            "rep_id": self.rep_id,
            "weight": self.weight,
            "load": self.load,
            "chosen": self.chosen,
            "reason": self.reason.value,
            "entry": self.entry.value,
            "credit_before": _leads(self.credit_before),
            "credit_compared": None if self.credit_compared is None else _leads(self.credit_compared),
            "credit_after": _leads(self.credit_after),
        }


@dataclass(frozen=True)
class Pick:
    """The chosen rep, and for every candidate why it was or was not chosen."""

    pool_id: str
    strategy: Strategy
    sequence: int
    """The rotation's pick number (0 for its first pick)."""
    rep_id: str
    candidates: tuple[Considered, ...]

    def as_record(self) -> dict[str, Any]:
        """JSON-ready form for an assignment's explanation."""
        return {
            "pool_id": self.pool_id,
            "strategy": self.strategy.value,
            "sequence": self.sequence,
            "rep_id": self.rep_id,
            "candidates": [candidate.as_record() for candidate in self.candidates],
        }


def validate(candidates: Sequence[Candidate]) -> None:
    """Raise ValueError unless there is a candidate, rep ids are unique, weights positive and loads not negative."""
    if not candidates:
        raise ValueError("a pick needs at least one candidate")
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.rep_id in seen:
            raise ValueError(f"rep {candidate.rep_id!r} is a candidate twice")
        seen.add(candidate.rep_id)
        if candidate.weight < 1:
            raise ValueError(f"rep {candidate.rep_id!r}: weight must be at least 1, not {candidate.weight}")
        if candidate.load < 0:
            raise ValueError(f"rep {candidate.rep_id!r}: load must not be negative, not {candidate.load}")


def choose(rotation: Rotation, *, pool_id: str, candidates: Sequence[Candidate], strategy: Strategy) -> Pick:
    """Pick one candidate and update the rotation in place (its members are created as needed)."""
    validate(candidates)
    sequence = rotation.picks
    entries = _place(rotation, candidates, sequence)
    before = {candidate.rep_id: rotation.members[candidate.rep_id].credit for candidate in candidates}
    if strategy is Strategy.WEIGHTED_ROUND_ROBIN:
        considered = _weighted_round_robin(rotation, candidates, entries, before)
    else:
        considered = _least_loaded(rotation, candidates, entries, before)
    winner = next(entry for entry in considered if entry.chosen).rep_id
    for candidate in candidates:
        rotation.members[candidate.rep_id].last_seen = sequence
    rotation.members[winner].last_won = sequence
    rotation.members[winner].waiting_since = sequence + 1  # behind anyone joining at this very pick
    rotation.members[winner].wins += 1
    rotation.picks = sequence + 1
    return Pick(pool_id=pool_id, strategy=strategy, sequence=sequence, rep_id=winner, candidates=tuple(considered))


def _place(rotation: Rotation, candidates: Sequence[Candidate], sequence: int) -> dict[str, Entry]:
    # The reps that were candidates at the previous pick keep their credit and set the band
    # [low, high]. A joining rep starts at `low`: the back of the queue, its first lead within one
    # round, never several in a row. A returning rep keeps the credit it left with, clamped into the
    # band: it never comes back ahead of the rep first in line (at most it takes the turn it already
    # had), and never owes for the leads handed out while it was away. Both wait from this pick, so
    # on equal credit and weight they come after the reps that stayed. When nobody stayed (a whole
    # team back on Monday), the returning reps keep their order, squeezed into a band narrower than
    # one lead, so that no stale gap between them turns into a burst.
    entries: dict[str, Entry] = {}
    stayed: list[int] = []
    returning: list[int] = []
    for candidate in candidates:
        member = rotation.members.get(candidate.rep_id)
        if member is None:
            entries[candidate.rep_id] = Entry.JOINED
        elif member.last_seen == sequence - 1:
            entries[candidate.rep_id] = Entry.STAYED
            stayed.append(member.credit)
        else:
            entries[candidate.rep_id] = Entry.RETURNED
            returning.append(member.credit)
    if stayed:
        low, high = min(stayed), max(stayed)
    elif returning:
        low = min(returning)
        high = low + SCALE - 1
    else:
        low = high = 0
    for candidate in candidates:
        entry = entries[candidate.rep_id]
        if entry is Entry.JOINED:
            rotation.members[candidate.rep_id] = Member(credit=low, waiting_since=sequence)
        elif entry is Entry.RETURNED:
            member = rotation.members[candidate.rep_id]
            member.credit = min(max(member.credit, low), high)
            member.waiting_since = sequence
    return entries


def _weighted_round_robin(
    rotation: Rotation, candidates: Sequence[Candidate], entries: dict[str, Entry], before: dict[str, int]
) -> list[Considered]:
    total = sum(candidate.weight for candidate in candidates)
    compared = {
        candidate.rep_id: before[candidate.rep_id] + _share(candidate.weight, total) for candidate in candidates
    }

    # Equal credits go to the heavier rep (whose credit would otherwise run ahead of its share),
    # then to the rep waiting longest, then to the lowest id: the queue stays a queue when shares
    # change with the candidates and credits come to coincide.
    weights = {candidate.rep_id: candidate.weight for candidate in candidates}

    def order(rep_id: str) -> tuple[int, int, int, str]:
        return -compared[rep_id], -weights[rep_id], rotation.members[rep_id].waiting_since, rep_id

    winner = min(compared, key=order)
    after = {rep_id: credit - (SCALE if rep_id == winner else 0) for rep_id, credit in compared.items()}
    shift = sum(after.values()) // len(after)  # keeps the credits small; only their differences decide
    for rep_id, credit in after.items():
        rotation.members[rep_id].credit = credit - shift
    considered = []
    for candidate in candidates:
        rep_id = candidate.rep_id
        if rep_id == winner:
            reason = Reason.HIGHEST_CREDIT
        elif compared[rep_id] != compared[winner]:
            reason = Reason.LOWER_CREDIT
        elif order(rep_id)[1] != order(winner)[1]:
            reason = Reason.TIED_CREDIT_WEIGHT
        elif order(rep_id)[2] != order(winner)[2]:
            reason = Reason.TIED_CREDIT
        else:
            reason = Reason.TIED_CREDIT_REP_ID
        considered.append(
            Considered(
                rep_id=rep_id,
                weight=candidate.weight,
                load=candidate.load,
                chosen=rep_id == winner,
                reason=reason,
                entry=entries[rep_id],
                credit_before=before[rep_id],
                credit_compared=compared[rep_id],
                credit_after=after[rep_id] - shift,
            )
        )
    return considered


def _least_loaded(
    rotation: Rotation, candidates: Sequence[Candidate], entries: dict[str, Entry], before: dict[str, int]
) -> list[Considered]:
    # Load per weight compared exactly (no floats); equal ratios go to the rep waiting longest in
    # this rotation, so equally loaded reps take turns.
    def order(candidate: Candidate) -> tuple[Fraction, int, str]:
        member = rotation.members[candidate.rep_id]
        return Fraction(candidate.load, candidate.weight), member.waiting_since, candidate.rep_id

    winner = min(candidates, key=order)
    best = order(winner)
    considered = []
    for candidate in candidates:
        key = order(candidate)
        if candidate is winner:
            reason = Reason.LOWEST_LOAD
        elif key[0] != best[0]:
            reason = Reason.HIGHER_LOAD
        elif key[1] != best[1]:
            reason = Reason.TIED_LOAD
        else:
            reason = Reason.TIED_LOAD_REP_ID
        considered.append(
            Considered(
                rep_id=candidate.rep_id,
                weight=candidate.weight,
                load=candidate.load,
                chosen=candidate is winner,
                reason=reason,
                entry=entries[candidate.rep_id],
                credit_before=before[candidate.rep_id],
                credit_compared=None,
                credit_after=before[candidate.rep_id],
            )
        )
    return considered


def _share(weight: int, total: int) -> int:
    # Rounded to the nearest unit when `total` does not divide SCALE: an error of at most half a
    # unit (2e-9 of a lead) per pick, and reps of equal weight always get equal shares.
    return (weight * SCALE * 2 + total) // (total * 2)


def _leads(credit: int) -> float:
    return round(credit / SCALE, 6)


def simulate(picks: Iterable[Sequence[Candidate]], *, strategy: Strategy = Strategy.WEIGHTED_ROUND_ROBIN) -> list[str]:
    """The reps a fresh rotation picks for a series of candidate lists (for tests and what-if tools)."""
    rotation = Rotation()
    return [choose(rotation, pool_id="simulation", candidates=c, strategy=strategy).rep_id for c in picks]
