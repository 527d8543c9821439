"""A structured, path-by-path diff of two JSON documents."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Op = Literal["add", "remove", "replace"]


class Change(BaseModel):
    """One difference at a JSON pointer: `from` is absent (null) for an add, `to` for a remove."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    op: Op
    path: str
    from_: Any = Field(default=None, alias="from")
    to: Any = None


def escape(token: str) -> str:
    """A JSON pointer reference token (RFC 6901): `~` and `/` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """The changes that turn `old` into `new`, recursing through objects and arrays.

    Keys keep the order of the documents; extra array items are removed from the end backwards
    and added in order, so applying the changes in sequence as a JSON Patch gives `new`.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key, value in old.items():
            where = f"{path}/{escape(str(key))}"
            if key in new:
                changes += diff(value, new[key], where)
            else:
                changes.append(Change(op="remove", path=where, from_=value))
        changes += [
            Change(op="add", path=f"{path}/{escape(str(key))}", to=value)
            for key, value in new.items()
            if key not in old
        ]
        return changes
    if isinstance(old, list) and isinstance(new, list):
        common = min(len(old), len(new))
        changes = [change for index in range(common) for change in diff(old[index], new[index], f"{path}/{index}")]
        changes += [
            Change(op="remove", path=f"{path}/{index}", from_=old[index]) for index in reversed(range(common, len(old)))
        ]
        changes += [Change(op="add", path=f"{path}/{index}", to=new[index]) for index in range(common, len(new))]
        return changes
    if type(old) is type(new) and old == new:  # 1 == 1.0 == True, yet a changed type is a change
        return []
    return [Change(op="replace", path=path, from_=old, to=new)]
