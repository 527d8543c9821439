"""Input checks every API shares: text must be storable in every supported database."""

from typing import Any


def storable(value: Any) -> Any:
    """Return `value` unchanged, or raise ValueError if a string in it cannot be stored.

    PostgreSQL rejects NUL characters in text, and lone UTF-16 surrogates (which JSON can
    express as escapes) are not UTF-8 at all; both would otherwise fail deep in the database
    layer. Dicts and lists are checked recursively, keys included.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value
