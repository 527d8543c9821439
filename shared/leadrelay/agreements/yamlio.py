"""Agreements as YAML files: export a version, import one as a new draft."""

from typing import Any

import yaml

MEDIA_TYPE = "application/yaml"
MEDIA_TYPES = frozenset({MEDIA_TYPE, "application/x-yaml", "text/yaml", "text/x-yaml"})


class YamlInvalid(ValueError):
    """The text is not a YAML mapping LeadRelay reads."""


def dump(*, kind: str, note: str, document: dict[str, Any]) -> str:
    """A version as YAML: kind, note and document, no version number (so a round trip is exact)."""
    return yaml.safe_dump(
        {"kind": kind, "note": note, "document": document}, sort_keys=False, allow_unicode=True, width=100
    )


def load(text: str) -> dict[str, Any]:
    """Parse one YAML mapping; anchors and aliases are refused (they can expand without bound)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise YamlInvalid("YAML aliases (*name) are not accepted")
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise YamlInvalid(_reason(exc)) from None
    if not isinstance(loaded, dict):
        raise YamlInvalid("the YAML document must be a mapping with kind, note and document")
    return loaded


def _reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else str(problem)
