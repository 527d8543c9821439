"""Routing rules made executable: a document compiled once into closures, then walked per lead.

Pure: no database, no clock, no availability. `evaluate` answers which rule matched, why every
rule before it did not, and the matched rule's action and fallback chain as data; choosing a rep
among the action's candidates (availability, fairness) is the caller's part.

CONTRACT (issue 9, next session): the assignment flow, simulate and replay call only `compile_rules`
(once per ruleset version), `facts_of`, `CompiledRules.evaluate` and what `RuleDecision` offers
(`rule`, `index`, `action`, `fallbacks`, `rule_path`, `evaluated`, `explain`, `as_dict`).

`facts` is a flat mapping from field path (`lead.country`, `score.mql`, `account.owner_rep_id`,
`lead.attributes.plan`) to value: `facts_of(lead.scored)` builds it; a path missing from it has no
value.
"""

import re
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from leadrelay.events import LeadScored
from leadrelay.lead_fields import LEAD_FIELDS
from router.rules.conditions import Condition, Range
from router.rules.document import Action, NurtureAction, RoutingDocument, chain, check

Facts = Mapping[str, Any]

CACHE_SIZE = 512
"""Outcomes each test remembers by value, the first seen (countries, grades, sources repeat; emails do not).

Once full it remembers no more rather than forget: evicting would rebuild the same outcomes over
and over on fields with many distinct values, where remembering cannot help anyway.
"""
MAX_SHOWN = 100
"""The longest value, in characters, an explanation repeats."""
SHOWN_VALUES = 5
"""How many of an `in` list's values a reason names."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a rule did not match: the first condition that failed, the value it saw, and in words."""

    at: str
    """JSON pointer, into the document, of the condition that failed (`/rules/2/when/all/0`)."""
    field: str | None
    seen: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"at": self.at, "field": self.field, "seen": self.seen, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One rule as the walk found it: matched, or the failure that stopped it."""

    rule: str
    matched: bool
    failure: Failure | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        said: dict[str, Any] = {"rule": self.rule, "matched": self.matched}
        if self.failure is not None:
            said.update(self.failure.as_dict())
        return said


@dataclass(frozen=True)
class RuleDecision:
    """Where a lead goes under one ruleset version, and why: read it, never change it.

    The decision is made by a fast walk; `evaluated` (every rule up to the matched one, and why
    each before it did not match) is worked out when first read, from the same facts.
    """

    version: str
    rule: str
    index: int
    action: Action
    fallbacks: tuple[Action, ...]
    """The matched rule's `otherwise` chain, in order (each step's own `otherwise` is the next one)."""
    _facts: Facts = field(repr=False, compare=False)
    _rules: "CompiledRules" = field(repr=False, compare=False)

    @cached_property
    def evaluated(self) -> tuple[RuleOutcome, ...]:
        """Every rule up to and including the one that matched, in order."""
        return self.explain()

    def explain(self, *, limit: int | None = None) -> tuple[RuleOutcome, ...]:
        """The rules evaluated, at most `limit` of them: the first `limit - 1` and the matched one."""
        if limit is None or self.index < limit:
            return self._rules.explain(self._facts, upto=self.index)
        return (
            *self._rules.explain(self._facts, upto=max(0, limit - 1) - 1),
            self._rules.explain_one(self._facts, self.index),
        )

    @property
    def rule_path(self) -> list[str]:
        """The names of the rules walked, the matched one last."""
        return [rule.name for rule in self._rules.document.rules[: self.index + 1]]

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready, with at most `limit` rules evaluated (the matched one always kept, the omitted counted)."""
        outcomes = self.evaluated if limit is None else self.explain(limit=limit)
        return {
            "version": self.version,
            "rule": self.rule,
            "action": _action_dict(self.action),
            "fallbacks": [_action_dict(step) for step in self.fallbacks],
            "evaluated": [outcome.as_dict() for outcome in outcomes],
            "evaluated_omitted": self.index + 1 - len(outcomes),
        }


def _action_dict(action: Action) -> dict[str, Any]:
    return action.model_dump(mode="json", exclude={"otherwise"}, exclude_none=True)


class InvalidRules(ValueError):
    """The document fails `check`: an engine cannot route every lead with it."""


Test = Callable[[Facts], Failure | None]
"""Reads the facts: None when the condition holds, else why not."""


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    name: str
    index: int
    test: Test | None
    """The explaining test of the whole condition."""
    nurture_guard: Failure | None
    matched: RuleOutcome
    action: Action
    fallbacks: tuple[Action, ...]
    multi_field: tuple[Test, ...]
    """Parts of the condition that read several fields: the walk runs them; the rest is in the field masks."""
    misses: dict[int, RuleOutcome] = field(default_factory=dict)


@dataclass(slots=True)
class _FieldMasks:
    """Every single-field part of every rule on one field, and per value the rules it rules out (a bit each).

    `equals` and `in` parts are a table from value to the rules they let through, `range` parts a
    sorted list of bounds: a value costs one look-up or one bisection however many rules test it.
    """

    path: str
    listed: dict[tuple[str, Any], int] = field(default_factory=dict)
    listed_rules: int = 0
    bounds: list[float] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)
    ranged_rules: int = 0
    predicates: list[tuple[int, Callable[[Any], bool]]] = field(default_factory=list)
    seen: dict[tuple[type, Any], int] = field(default_factory=dict)

    def failing(self, value: Any) -> int:
        """The rules a value of this field rules out."""
        mask = 0
        if self.listed_rules:
            letting = 0
            for key in _keys(value):
                letting |= self.listed.get(key, 0)
            mask |= self.listed_rules & ~letting
        if self.ranged_rules:
            mask |= self.ranged_rules & ~self._in_range(value)
        for bit, holds in self.predicates:
            if not mask & bit and not holds(value):
                mask |= bit
        return mask

    def _in_range(self, value: Any) -> int:
        letting = 0
        for item in value if isinstance(value, list) else (value,):
            number = _number(item)
            if number is not None and number == number:  # NaN is in no range
                at = bisect_left(self.bounds, number)
                on_bound = at < len(self.bounds) and self.bounds[at] == number
                letting |= self.spans[2 * at + 1 if on_bound else 2 * at]
        return letting

    def index_ranges(self, ranges: list[tuple[int, Range]]) -> None:
        """The rules each stretch of numbers lets through: below the first bound, on it, between it and the next, ..."""
        self.bounds = sorted({bound for _, span in ranges for bound in (span.min, span.max) if bound is not None})
        points = self.bounds
        samples = [points[0] - 1]
        for index, point in enumerate(points):
            samples.append(point)
            samples.append((point + points[index + 1]) / 2 if index + 1 < len(points) else point + 1)
        self.spans = [
            sum(bit for bit, span in ranges
                if (span.min is None or sample >= span.min) and (span.max is None or sample <= span.max))
            for sample in samples
        ]  # fmt: skip
        self.ranged_rules = sum({bit for bit, _ in ranges})


def _keys(value: Any) -> list[tuple[str, Any]]:
    """The table keys a value answers to: its text (case-insensitive), its number, its flag; a list, its items'."""
    if _missing(value):
        return []
    if isinstance(value, list):
        return [key for item in value for key in _keys(item)]
    if isinstance(value, bool):
        return [("flag", value)]
    keys: list[tuple[str, Any]] = [("text", _text(str(value)))]
    number = _number(value)
    if number is not None:
        keys.append(("number", number))
    return keys


def _key(wanted: Any) -> tuple[str, Any]:
    if isinstance(wanted, bool):
        return ("flag", wanted)
    if isinstance(wanted, str):
        return ("text", _text(wanted))
    return ("number", wanted)


@dataclass(frozen=True)
class CompiledRules:
    """A routing ruleset version ready to route leads quickly."""

    version: str
    document: RoutingDocument
    _rules: tuple[_CompiledRule, ...] = field(repr=False, default=())
    _fields: tuple[_FieldMasks, ...] = field(repr=False, default=())
    _everything: int = field(repr=False, default=0)

    def evaluate(self, facts: Facts) -> RuleDecision:
        """The first rule that matches the facts, its action and fallbacks; `facts` must not change afterwards.

        Each field's value is looked up once: per value, a bit mask of the rules a single-field part
        rules out is remembered, so the walk is a few mask operations plus the multi-field parts of
        the rules still standing, in order.
        """
        ruled_out = 0
        for masks in self._fields:
            value = facts.get(masks.path)
            key = (value.__class__, value)
            try:
                known = masks.seen.get(key)
            except TypeError:  # a list or dict value (an attribute): not remembered
                known = masks.failing(value)
            if known is None:
                known = masks.failing(value)
                if len(masks.seen) < CACHE_SIZE:
                    masks.seen[key] = known
            ruled_out |= known
        standing = self._everything & ~ruled_out
        rules = self._rules
        while standing:
            lowest = standing & -standing
            rule = rules[lowest.bit_length() - 1]
            if all(test(facts) is None for test in rule.multi_field):
                return RuleDecision(self.version, rule.name, rule.index, rule.action, rule.fallbacks, facts, self)
            standing ^= lowest
        raise InvalidRules(f"routing {self.version}: no rule matched; the catch-all must be last")  # pragma: no cover

    def explain(self, facts: Facts, *, upto: int) -> tuple[RuleOutcome, ...]:
        """How each rule up to index `upto` (included) fares with the facts."""
        return tuple(self.explain_one(facts, index) for index in range(upto + 1))

    def explain_one(self, facts: Facts, index: int) -> RuleOutcome:
        """How one rule fares with the facts: matched, or the first condition that failed."""
        rule = self._rules[index]
        failure = None if rule.test is None else rule.test(facts)
        if failure is None and rule.nurture_guard is not None and facts.get("score.mql") is True:
            failure = rule.nurture_guard
        return rule.matched if failure is None else _missed(rule, failure)


def _missed(rule: _CompiledRule, failure: Failure) -> RuleOutcome:
    # Failures are shared per value, so their outcome can be too; the cache keeps each failure alive,
    # which keeps its id from being reused.
    key = id(failure)
    known = rule.misses.get(key)
    if known is not None and known.failure is failure:
        return known
    outcome = RuleOutcome(rule.name, False, failure)
    if len(rule.misses) < CACHE_SIZE:
        rule.misses[key] = outcome
    return outcome


def compile_rules(document: RoutingDocument, *, version: str) -> CompiledRules:
    """Prepare a checked document for evaluation (tests, regexes, value sets and field masks built once)."""
    errors = check(document)
    if errors:
        raise InvalidRules("; ".join(f"{at}: {message}" for at, message in errors))
    compiled = []
    by_field: dict[str, list[tuple[int, Callable[[Any], bool]]]] = {}
    listed: dict[str, list[tuple[int, list[Any]]]] = {}
    ranged: dict[str, list[tuple[int, Range]]] = {}
    for index, rule in enumerate(document.rules):
        at, bit = f"/rules/{index}", 1 << index
        guard = None
        if isinstance(rule.action, NurtureAction):
            guard = Failure(f"{at}/action", "score.mql", True, "an MQL is never nurtured")
            by_field.setdefault("score.mql", []).append((bit, _not_true))
        multi_field: list[Test] = []
        when = rule.when
        parts = [] if when is None else (when.all if when.all is not None else [when])
        indexed: set[tuple[str, bool]] = set()
        for number, part in enumerate(parts):
            where = f"{at}/when/all/{number}" if when is not None and when.all is not None else f"{at}/when"
            test = _compile(part, at=where)
            paths = _fields_of(part)
            if len(paths) == 1:
                (path,) = paths
                operator = part.operator()
                # One table entry per rule and field: a second part of the same rule on the same field
                # must hold too, which a table that lets a rule through on either cannot say.
                tabled = (path, operator == "range")
                if operator in ("equals", "in", "range"):
                    if tabled in indexed:
                        operator = None
                    indexed.add(tabled)
                if operator in ("equals", "in"):
                    listed.setdefault(path, []).append((bit, [part.equals] if operator == "equals" else part.in_ or []))
                elif operator == "range" and part.range is not None:
                    ranged.setdefault(path, []).append((bit, part.range))
                else:
                    by_field.setdefault(path, []).append((bit, _predicate(part, path, test)))
            else:
                multi_field.append(test)
        compiled.append(
            _CompiledRule(
                name=rule.name,
                index=index,
                test=None if when is None else _compile(when, at=f"{at}/when"),
                nurture_guard=guard,
                matched=RuleOutcome(rule.name, True),
                action=rule.action,
                fallbacks=tuple(chain(rule)),
                multi_field=tuple(multi_field),
            )
        )
    masks: dict[str, _FieldMasks] = {}
    for path in [*by_field, *listed, *ranged]:
        masks.setdefault(path, _FieldMasks(path, predicates=by_field.get(path, [])))
    for path, tabled_parts in listed.items():
        table = masks[path]
        for bit, values in tabled_parts:
            table.listed_rules |= bit
            for wanted in values:
                table.listed[_key(wanted)] = table.listed.get(_key(wanted), 0) | bit
    for path, spans in ranged.items():
        masks[path].index_ranges(spans)
    fields = tuple(masks.values())
    return CompiledRules(version, document, tuple(compiled), fields, (1 << len(compiled)) - 1)


def _not_true(value: Any) -> bool:
    return value is not True


def _on_value(path: str, test: Test) -> Callable[[Any], bool]:
    """A single-field test as a predicate of the field's value."""
    return lambda value: test({path: value}) is None


def _predicate(condition: Condition, path: str, test: Test) -> Callable[[Any], bool]:
    """Whether a single-field part holds for a value: the explaining test's verdict, without building its why.

    The field masks only need the verdict, and for values too many to remember (emails, job titles)
    building every failure's reason cost more than the rest of the walk.
    """
    operator = condition.operator()
    if condition.field is None or operator is None:
        return _on_value(path, test)  # a `not` or `any` over one field: the explaining test decides
    if operator == "exists":
        wanted = bool(condition.exists)
        return lambda value: (not _missing(value)) == wanted
    matches, _ = _matcher(condition)

    def holds(value: Any) -> bool:
        return not _missing(value) and any(matches(item) for item in (value if isinstance(value, list) else (value,)))

    return holds


def _fields_of(condition: Condition) -> set[str]:
    """Every field a condition reads."""
    if condition.field is not None:
        return {condition.field}
    children = [*(condition.all or []), *(condition.any or []), *([condition.not_] if condition.not_ else [])]
    return set().union(*(_fields_of(child) for child in children)) if children else set()


def facts_of(scored: LeadScored) -> dict[str, Any]:
    """The facts a rule reads about a scored lead, keyed by field path."""
    lead = scored.lead
    facts: dict[str, Any] = {f"lead.{name}": getattr(lead, name) for name in LEAD_FIELDS}
    for name, value in lead.attributes.items():
        facts[f"lead.attributes.{name}"] = value
    grade = scored.grade
    facts.update(
        {
            "score.score": scored.score,
            "score.fit": scored.fit,
            "score.engagement": scored.engagement,
            "score.grade": grade,
            "score.fit_grade": grade[0] if grade else None,
            "score.engagement_grade": int(grade[1]) if grade else None,
            "score.mql": scored.mql,
            "score.became_mql": scored.became_mql,
            "score.disqualified": scored.disqualified,
            "score.stage": str(scored.stage),
            "score.icp_version": scored.icp_version,
            "score.trigger": str(scored.trigger),
        }
    )
    account = scored.account
    if account is not None:
        facts.update(
            {
                "account.account_id": account.account_id,
                "account.owner_rep_id": account.owner_rep_id,
                "account.method": str(account.method),
                "account.confidence": account.confidence,
            }
        )
    return facts


# Compiling conditions.

_UNKNOWN = object()


def _compile(condition: Condition, *, at: str) -> Test:
    if condition.all is not None:
        return _all(tuple(_compile(child, at=f"{at}/all/{n}") for n, child in enumerate(condition.all)))
    if condition.any is not None:
        return _any(tuple(_compile(child, at=f"{at}/any/{n}") for n, child in enumerate(condition.any)), at=at)
    if condition.not_ is not None:
        return _not(condition.not_, at=at)
    return _remembered(condition.field or "", _judge(condition, at=at))


def _all(tests: tuple[Test, ...]) -> Test:
    def all_hold(facts: Facts) -> Failure | None:
        for test in tests:
            failure = test(facts)
            if failure is not None:
                return failure
        return None

    return all_hold


def _any(tests: tuple[Test, ...], *, at: str) -> Test:
    def any_holds(facts: Facts) -> Failure | None:
        failures = []
        for test in tests:
            failure = test(facts)
            if failure is None:
                return None
            failures.append(failure)
        first = failures[0]
        said = "; ".join(failure.reason for failure in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        return Failure(at, first.field, first.seen, f"none of {len(failures)} held: {said}{more}")

    return any_holds


def _not(inner: Condition, *, at: str) -> Test:
    test = _compile(inner, at=f"{at}/not")
    path = inner.field
    held = f"not: {describe(inner)} held"

    def negated(facts: Facts) -> Failure | None:
        if test(facts) is not None:
            return None
        return Failure(at, path, None if path is None else _show(facts.get(path)), held)

    return negated


def _remembered(path: str, judge: Callable[[Any], Failure | None]) -> Test:
    """`judge(value of path)`, remembered per value: a failure costs more to build than to find again."""
    seen: dict[tuple[type, Any], Failure | None] = {}

    def test(facts: Facts) -> Failure | None:
        value = facts.get(path)
        key = (value.__class__, value)
        try:
            known = seen.get(key, _UNKNOWN)
        except TypeError:  # a list or dict value (an attribute): not remembered
            return judge(value)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        result = judge(value)
        if len(seen) < CACHE_SIZE:
            seen[key] = result
        return result

    return test


def _judge(condition: Condition, *, at: str) -> Callable[[Any], Failure | None]:
    path = condition.field or ""
    operator = condition.operator()

    def failed(value: Any, reason: str) -> Failure:
        return Failure(at, path, _show(value), reason)

    if operator == "exists":
        wanted = bool(condition.exists)

        def exists(value: Any) -> Failure | None:
            present = not _missing(value)
            if present == wanted:
                return None
            return failed(value, f"{path} is {_said(value)}" if present else f"no {path}")

        return exists
    matches, expected = _matcher(condition)

    def judged(value: Any) -> Failure | None:
        if _missing(value):
            return failed(None, f"no {path}")
        if any(matches(item) for item in (value if isinstance(value, list) else (value,))):
            return None
        return failed(value, f"{path} {_said(value)} {expected}")

    return judged


def _matcher(condition: Condition) -> tuple[Callable[[Any], bool], str]:
    """A test of one value (a list value matches when any item does), and what a non-matching value is not."""
    if condition.equals is not None:
        wanted = condition.equals
        return _equal_to(wanted), f"is not {_said(wanted)}"
    if condition.in_ is not None:
        values = condition.in_
        texts = frozenset(_text(value) for value in values if isinstance(value, str))
        flags = frozenset(value for value in values if isinstance(value, bool))
        numbers = frozenset(value for value in values if not isinstance(value, (str, bool)))
        shown = ", ".join(str(value) for value in values[:SHOWN_VALUES])
        shown += f", ... ({len(values)} values)" if len(values) > SHOWN_VALUES else ""

        def is_in(value: Any) -> bool:
            if isinstance(value, bool):
                return value in flags
            if isinstance(value, str):
                return _text(value) in texts or (bool(numbers) and _number(value) in numbers)
            return _number(value) in numbers or (bool(texts) and _text(str(value)) in texts)

        return is_in, f"not in [{shown}]"
    if condition.range is not None:
        low, high = condition.range.min, condition.range.max

        def in_range(value: Any) -> bool:
            number = _number(value)
            return number is not None and (low is None or number >= low) and (high is None or number <= high)

        return in_range, f"outside {_span(condition.range)}"
    pattern = re.compile(condition.regex or "", re.IGNORECASE)
    return (lambda value: pattern.search(str(value)) is not None), f"does not match /{condition.regex}/"


def _equal_to(wanted: Any) -> Callable[[Any], bool]:
    if isinstance(wanted, bool):
        return lambda value: value is wanted
    if isinstance(wanted, str):
        text = _text(wanted)
        return lambda value: not isinstance(value, bool) and _text(str(value)) == text
    return lambda value: _number(value) == wanted


def describe(condition: Condition) -> str:
    """A condition in a few words, for reasons."""
    operator = condition.operator()
    if operator in ("all", "any"):
        children = condition.all if operator == "all" else condition.any
        return f"{operator} of {len(children or [])}"
    if operator == "not":
        return f"not ({describe(condition.not_)})" if condition.not_ is not None else "not"
    if operator == "in":
        return f"{condition.field} in [{', '.join(str(value) for value in (condition.in_ or [])[:SHOWN_VALUES])}]"
    if operator == "range" and condition.range is not None:
        return f"{condition.field} in {_span(condition.range)}"
    if operator == "regex":
        return f"{condition.field} matches /{condition.regex}/"
    if operator == "exists":
        return f"{condition.field} {'exists' if condition.exists else 'missing'}"
    return f"{condition.field} is {_said(condition.equals)}"


def _span(bounds: Range) -> str:
    if bounds.min is None:
        return f"up to {bounds.max:g}"
    return f"{bounds.min:g}+" if bounds.max is None else f"{bounds.min:g}-{bounds.max:g}"


def _missing(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def _text(value: str) -> str:
    return value.strip().casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return None


def _show(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[:MAX_SHOWN] + "..."
    if isinstance(value, list) and len(value) > SHOWN_VALUES:
        return [*value[:SHOWN_VALUES], "..."]
    return value


def _said(value: Any) -> str:
    """A value as the document writes it: `true`, `42`, `'DE'`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(_show(value))
