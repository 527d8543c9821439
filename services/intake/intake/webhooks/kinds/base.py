"""What every kind shares: the delivery as received, and the two ways a delivery fails."""

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from leadrelay.limits import loads
from leadrelay.problems import ProblemHTTPException

# Signed timestamps older (or further in the future) than this are refused: a captured delivery
# cannot be replayed later, and the replay store only has to remember 72 hours.
SIGNATURE_TOLERANCE = timedelta(minutes=5)


class SignatureInvalid(Exception):
    """The delivery is not proven to come from the source (401; nothing stored)."""


class PayloadInvalid(Exception):
    """The delivery is authentic but not a shape the kind knows (422; nothing stored)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Delivery:
    """One request to `POST /v1/webhooks/{name}`, as the sender signed it."""

    method: str
    uri: str  # the full URI the sender addressed, query string included
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes
    now: datetime
    token_header: str = "X-LeadRelay-Token"
    content_type: str = field(default="application/json")

    def body_hash(self) -> str:
        """SHA-256 of the body: the delivery's id where the sender sends none."""
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Record:
    """One sender record that may become a lead: its JSON, and where its free-form fields live."""

    data: dict[str, Any]
    attribute_paths: Sequence[str] = ()  # dotted paths to objects whose unnamed scalars become attributes


class Kind(Protocol):
    """A sender family: how it signs, and how its bodies hold records."""

    @property
    def builtin_mapping(self) -> Mapping[str, Sequence[str]]:
        """Lead field -> dotted paths into a record; the first present wins."""
        ...

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """The delivery's id if one of `secrets` signed it; raises SignatureInvalid otherwise."""
        ...

    def records(self, delivery: Delivery) -> list[Record]:
        """The records the (verified) body carries; raises PayloadInvalid."""
        ...


def equal(expected: str | bytes, presented: str | bytes) -> bool:
    """Constant-time comparison of two signatures."""
    left = expected.encode() if isinstance(expected, str) else expected
    right = presented.encode() if isinstance(presented, str) else presented
    return hmac.compare_digest(left, right)


def any_matches(presented: str | None, expected: Sequence[str]) -> bool:
    """Whether the presented signature equals one of the expected ones (each compared in constant time)."""
    if not presented:
        return False
    matched = False
    for candidate in expected:
        matched |= equal(candidate, presented)  # no early exit: timing does not tell which secret matched
    return matched


def parse_json(body: bytes) -> Any:
    """The body as JSON; PayloadInvalid naming the body otherwise."""
    try:
        return loads(body)  # the edge's strict JSON: UTF-8, finite numbers, bounded depth
    except ProblemHTTPException as malformed:
        raise PayloadInvalid("body", f"not valid JSON: {malformed.problem.detail}") from None


def objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A JSON object or array of objects as a list of objects."""
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadInvalid(f"{where}.{index}" if isinstance(value, list) else where, "must be a JSON object")
    return items
