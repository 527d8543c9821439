"""The mapping engine: a sender's record to a LeadCreate, by the kind's built-in paths and the source's own."""

import json
import types
from collections.abc import Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError

from intake.leads import normalise
from intake.leads.schemas import MAX_ATTRIBUTES_BYTES, LeadCreate
from intake.sources.schemas import ATTRIBUTES_PREFIX, lead_fields
from intake.webhooks.kinds.base import PayloadInvalid, Record

Scalar = str | int | float | bool


def resolve(data: Any, path: str) -> Any:
    """The value at a dotted path (`data.email`, `items.0.id`), or None."""
    value = data
    for segment in path.split(".") if path else []:
        if isinstance(value, dict):
            value = value.get(segment)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return value


def scalar(value: Any) -> Scalar | None:
    """A usable leaf value: `{"value": x}` (HubSpot, Mautic) unwrapped; empty text and containers are none."""
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool | int | float):
        return value
    return None


def _takes_text(field: str) -> bool:
    annotation = LeadCreate.model_fields[field].annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return str in options


def _as_field(field: str, value: Scalar) -> Scalar:
    # Senders type loosely (a HubSpot objectId is a number, a phone may be too): text fields take text.
    return str(value) if _takes_text(field) and not isinstance(value, str | bool) else value


def to_lead(
    record: Record,
    *,
    index: int,
    builtin: Mapping[str, Sequence[str]],
    custom: Mapping[str, str],
    source_name: str,
) -> LeadCreate | None:
    """The record as a lead, or None when it names no email (not a person yet); PayloadInvalid when invalid."""
    fields = lead_fields()
    values: dict[str, Scalar] = {}
    attributes: dict[str, Scalar] = {}
    origins: dict[str, str] = {}
    named = set(custom)
    for field, paths in builtin.items():
        named.update(paths)
        if field not in fields:
            continue  # a field this version of leads does not have yet
        for path in paths:
            found = scalar(resolve(record.data, path))
            if found is not None:
                values[field], origins[field] = _as_field(field, found), path
                break
    for path, target in custom.items():  # the source's own mapping wins over the built-in one
        found = scalar(resolve(record.data, path))
        if found is None:
            continue
        if target.startswith(ATTRIBUTES_PREFIX):
            attributes[target.removeprefix(ATTRIBUTES_PREFIX)] = found
        elif target in fields:
            values[target], origins[target] = _as_field(target, found), path
    if "email" not in values:
        return None
    _keep_unknown_country(values, attributes, origin=origins.get("country", "country"))
    _add_unnamed(attributes, record, named)
    values.setdefault("source", source_name)
    try:
        return LeadCreate.model_validate({**values, "attributes": attributes})
    except ValidationError as invalid:
        error = invalid.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise PayloadInvalid(f"records.{index}.{where}", error["msg"]) from None


def _keep_unknown_country(values: dict[str, Scalar], attributes: dict[str, Scalar], *, origin: str) -> None:
    # Platforms take the country as free text ("Untied Kingdom"): one a lead cannot hold is kept as
    # an attribute, as it was before a mapping named it, rather than refusing the whole delivery.
    country = values.get("country")
    if not isinstance(country, str):
        return
    try:
        normalise.country(country)
    except ValueError:
        del values["country"]
        kept = {**attributes, origin.rsplit(".", 1)[-1]: country}
        if len(json.dumps(kept, default=str)) <= MAX_ATTRIBUTES_BYTES:
            attributes.update(kept)


def _add_unnamed(attributes: dict[str, Scalar], record: Record, named: set[str]) -> None:
    # Fields the mapping does not name are kept as attributes, in the sender's order, while they fit:
    # a lead is never refused for carrying many fields.
    size = len(json.dumps(attributes, default=str))
    for root in record.attribute_paths:
        container = resolve(record.data, root)
        if not isinstance(container, dict):
            continue
        for key, raw in container.items():
            path = f"{root}.{key}" if root else key
            value = scalar(raw)
            if path in named or value is None or key in attributes:
                continue
            added = len(json.dumps({key: value}, default=str))
            if size + added > MAX_ATTRIBUTES_BYTES:
                continue
            attributes[key] = value
            size += added


def to_leads(
    records: Sequence[Record], *, builtin: Mapping[str, Sequence[str]], custom: Mapping[str, str], source_name: str
) -> list[LeadCreate]:
    """Every record that names a person, as a lead, in order."""
    leads = []
    for index, record in enumerate(records):
        lead = to_lead(record, index=index, builtin=builtin, custom=custom, source_name=source_name)
        if lead is not None:
            leads.append(lead)
    return leads
