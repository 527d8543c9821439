"""Input checks every API shares: a value must be storable in every supported database and readable by every service."""

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

T = TypeVar("T")
Location = tuple[int | str, ...]

# Bounds of free-form values (a lead's attributes, a webhook's unmapped fields). Every event about a
# value is parsed by every consumer: past about 200 levels pydantic's JSON parser refuses a
# message (the consumer dead-letters it) and past 255 its serializer fails (the request 500s).
MAX_DEPTH = 16
MAX_KEY_CHARS = 200
MAX_FREE_FORM_BYTES = 16_384
# No string can be longer than its whole value may be; checked per string, a huge one is refused
# before anything serializes it.
MAX_STRING_CHARS = MAX_FREE_FORM_BYTES
# What a 64-bit column, a consumer in another language and PostgreSQL's bigint all hold.
MAX_INTEGER = 2**63 - 1


def storable(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """Return `value` unchanged, or raise ValueError saying why it cannot be stored and passed on.

    PostgreSQL rejects NUL characters in text, and lone UTF-16 surrogates (which JSON can express
    as escapes) are not UTF-8 at all; both would otherwise fail deep in the database layer.
    Non-finite numbers would be stored as null; integers past 64 bits, strings past
    MAX_STRING_CHARS and nesting past `max_depth` levels are refused so that every consumer can
    read what was accepted. Dicts and lists are checked level by level, keys included.
    """
    level: list[Any] = [value]
    for depth in range(max_depth + 1):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict | list) and depth == max_depth:
                raise ValueError(f"must be nested at most {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    _scalar(key, key=True)
                    below.append(child)
            elif isinstance(item, list):
                below.extend(item)
            else:
                _scalar(item)
        if not below:
            break
        level = below
    return value


def _scalar(value: Any, *, key: bool = False) -> None:
    if isinstance(value, str):
        limit = MAX_KEY_CHARS if key else MAX_STRING_CHARS
        if len(value) > limit:
            raise ValueError(f"{'keys' if key else 'text'} must be at most {limit} characters")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, int) and not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
        raise ValueError("integers must fit in 64 bits")


def free_form(value: Any, *, max_bytes: int = MAX_FREE_FORM_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """`storable`, and at most `max_bytes` of UTF-8 JSON: the check for a free-form value such as attributes."""
    storable(value, max_depth=max_depth)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > max_bytes:
        raise ValueError(f"must serialize to at most {max_bytes} bytes of JSON")
    return value


def relocating_errors(handler: Callable[[Any], T], data: Any, relocate: Callable[[Location], Location]) -> T:
    """`handler(data)` of a wrap validator, its errors raised again with each location passed through `relocate`.

    Pydantic puts a tagged union's tag into an error's location (`rules/0/action/pool/reps`); a
    document has no such level, and a JSON pointer must name the field as written.
    """
    try:
        return handler(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            error["loc"] = relocate(error["loc"])
        raise ValidationError.from_exception_data(exc.title, errors) from None  # type: ignore[arg-type]
