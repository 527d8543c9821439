"""Rule conditions: the fields a rule may read, the operators, and the checks an engine relies on.

A condition is one JSON object with exactly one operator: a test on a `field` (`equals`, `in`,
`range`, `regex`, `exists`) or a combinator (`all`, `any`, `not`). docs/routing.md, "Conditions",
is the reader's guide.
"""

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.agreements import DocumentError
from leadrelay.lead_fields import LEAD_FIELDS, FieldType

SCORE_FIELDS: dict[str, FieldType] = {
    "score": FieldType.NUMBER,
    "fit": FieldType.NUMBER,
    "engagement": FieldType.NUMBER,
    "grade": FieldType.TEXT,
    "fit_grade": FieldType.TEXT,
    "engagement_grade": FieldType.NUMBER,
    "mql": FieldType.FLAG,
    "became_mql": FieldType.FLAG,
    "disqualified": FieldType.TEXT,
    "stage": FieldType.TEXT,
    "icp_version": FieldType.TEXT,
    "trigger": FieldType.TEXT,
}
"""`score.<field>`: the score (`fit_grade` A-D and `engagement_grade` 1-4 are the two halves of `grade`)."""

ACCOUNT_FIELDS: dict[str, FieldType] = {
    "account_id": FieldType.TEXT,
    "owner_rep_id": FieldType.TEXT,
    "method": FieldType.TEXT,
    "confidence": FieldType.NUMBER,
}
"""`account.<field>`: the matched account (every one missing when no account matched)."""

NAMESPACES: dict[str, dict[str, FieldType]] = {"lead": LEAD_FIELDS, "score": SCORE_FIELDS, "account": ACCOUNT_FIELDS}
ATTRIBUTE_PREFIX = "lead.attributes."
_ATTRIBUTE = re.compile(r"^lead\.attributes\.[A-Za-z0-9_\-]{1,64}$")

MAX_DEPTH = 6
"""How deep combinators may nest (`all` in `any` in `not` ...): deeper is unreadable, and unbounded a risk."""
MAX_REGEX = 200
"""The longest pattern a `regex` takes: long patterns are where catastrophic backtracking hides."""

OPERATORS = ("equals", "in", "range", "regex", "exists", "all", "any", "not")
FIELD_OPERATORS = frozenset({"equals", "in", "range", "regex", "exists"})

_ACCEPTS: dict[str, frozenset[FieldType]] = {
    "equals": frozenset(FieldType),
    "in": frozenset({FieldType.TEXT, FieldType.COUNTRY, FieldType.NUMBER, FieldType.ANY}),
    "range": frozenset({FieldType.NUMBER, FieldType.ANY}),
    "regex": frozenset({FieldType.TEXT, FieldType.COUNTRY, FieldType.ANY}),
    "exists": frozenset(FieldType),
}
"""Which field types each test reads (an attribute, of unknown type, goes with any)."""

Scalar = Annotated[str, Field(min_length=1, max_length=200)] | int | float | bool
FieldPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="`lead.<field>`, `lead.attributes.<name>`, `score.<field>` or `account.<field>`.",
        examples=["lead.country", "score.grade", "account.owner_rep_id"],
    ),
]


def field_type(path: str) -> FieldType | None:
    """The type of a field path, or None when no scored lead has such a field."""
    namespace, _, name = path.partition(".")
    fields = NAMESPACES.get(namespace)
    if fields is not None and name in fields:
        return fields[name]
    if _ATTRIBUTE.match(path):
        return FieldType.ANY
    return None


def known_fields() -> str:
    """The field namespace in words, for error messages."""
    return "; ".join(
        [f"{namespace}.{{{', '.join(fields)}}}" for namespace, fields in NAMESPACES.items()]
        + ["lead.attributes.<name>"]
    )


class Range(BaseModel):
    """Bounds of a number, both included; leave `min` or `max` out for an open end."""

    model_config = ConfigDict(extra="forbid")

    min: int | float | None = None
    max: int | float | None = None


class Condition(BaseModel):
    """One test on a field, or a combinator of conditions: exactly one operator."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    field: FieldPath | None = None
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1, max_length=1000)
    range: Range | None = None
    regex: str | None = Field(default=None, min_length=1, max_length=MAX_REGEX)
    exists: bool | None = None
    all: list["Condition"] | None = Field(default=None, min_length=1, max_length=50)
    any: list["Condition"] | None = Field(default=None, min_length=1, max_length=50)
    not_: "Condition | None" = Field(default=None, alias="not")

    def operator(self) -> str | None:
        """The one operator given (None when none or several are: `check_condition` says which)."""
        given = self.operators()
        return given[0] if len(given) == 1 else None

    def operators(self) -> list[str]:
        """Every operator given, in the documented order."""
        values = (self.equals, self.in_, self.range, self.regex, self.exists, self.all, self.any, self.not_)
        return [name for name, value in zip(OPERATORS, values, strict=True) if value is not None]


def check_condition(condition: Condition, *, at: str, depth: int = 1) -> list[DocumentError]:
    """Every reason `condition` could not be evaluated, each at its JSON pointer."""
    operators = condition.operators()
    if len(operators) != 1:
        said = "none" if not operators else ", ".join(operators)
        return [(at, f"give exactly one of {', '.join(OPERATORS)} (given: {said})")]
    operator = operators[0]
    if operator not in FIELD_OPERATORS:
        if condition.field is not None:
            return [(f"{at}/field", f"{operator!r} combines conditions and reads no field; put the field inside")]
        if depth >= MAX_DEPTH:
            return [(f"{at}/{operator}", f"conditions nest at most {MAX_DEPTH} deep")]
        if condition.not_ is not None:
            return check_condition(condition.not_, at=f"{at}/not", depth=depth + 1)
        children = condition.all if condition.all is not None else condition.any
        errors: list[DocumentError] = []
        for index, child in enumerate(children or []):
            errors += check_condition(child, at=f"{at}/{operator}/{index}", depth=depth + 1)
        return errors
    if condition.field is None:
        return [(f"{at}/field", f"{operator!r} tests a field: name it")]
    found = field_type(condition.field)
    if found is None:
        return [(f"{at}/field", f"unknown field {condition.field!r}: use {known_fields()}")]
    if found not in _ACCEPTS[operator]:
        accepted = " or ".join(sorted(kind.value for kind in _ACCEPTS[operator] if kind is not FieldType.ANY))
        return [(f"{at}/field", f"{condition.field!r} holds a {found.value}; {operator!r} reads a {accepted}")]
    return _check_operand(condition, operator, found, at=at)


def _check_operand(condition: Condition, operator: str, found: FieldType, *, at: str) -> list[DocumentError]:
    if operator == "equals":
        return _check_value(condition.equals, found, at=f"{at}/equals")
    if operator == "in":
        errors: list[DocumentError] = []
        for index, value in enumerate(condition.in_ or []):
            errors += _check_value(value, found, at=f"{at}/in/{index}")
        return errors
    if operator == "range":
        bounds = condition.range
        if bounds is None or (bounds.min is None and bounds.max is None):
            return [(f"{at}/range", "give min, max or both")]
        if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
            return [(f"{at}/range/max", f"max {bounds.max:g} is below min {bounds.min:g}")]
        return []
    if operator == "regex":
        try:
            re.compile(condition.regex or "")
        except re.error as exc:
            return [(f"{at}/regex", f"not a regular expression: {exc}")]
    return []


def _check_value(value: Any, found: FieldType, *, at: str) -> list[DocumentError]:
    if found is FieldType.ANY:
        return []
    is_flag, is_number = isinstance(value, bool), isinstance(value, (int, float)) and not isinstance(value, bool)
    if found is FieldType.FLAG and not is_flag:
        return [(at, f"the field holds a flag: compare it with true or false, not {value!r}")]
    if found is FieldType.NUMBER and not is_number:
        return [(at, f"the field holds a number: compare it with a number, not {value!r}")]
    if found in (FieldType.TEXT, FieldType.COUNTRY) and not isinstance(value, str):
        return [(at, f"the field holds a text: compare it with a text, not {value!r}")]
    return []


def requires(condition: Condition | None, field: str, value: Any) -> bool:
    """Whether every lead the condition matches has `field` equal to `value` (as far as its `all` spine shows)."""
    if condition is None:
        return False
    if condition.field == field and condition.equals is not None and condition.operator() == "equals":
        return bool(condition.equals == value and type(condition.equals) is type(value))
    if condition.all is not None:
        return any(requires(child, field, value) for child in condition.all)
    return False
