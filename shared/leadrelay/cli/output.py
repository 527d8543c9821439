"""What `leadrelay` prints: JSON for scripts, rich text for people, errors on stderr."""

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leadrelay.cli.http import CliError

# Piped output goes to files and grep, not to a screen: wide enough that tables need not wrap.
PIPED_WIDTH = 240
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else PIPED_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def show_error(error: CliError) -> None:
    """An error in a few lines on stderr: the message, then the failing fields."""
    stderr.print(f"[bold red]Error:[/] {escape(error.message)}")
    for line in error.details:
        stderr.print(f"  {escape(line)}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None) -> Table:
    """A table of `columns` (missing values left blank); cells are plain text, never markup.

    Narrow terminals wrap cells rather than cut them; the first column (an id) never wraps.
    """
    grid = Table(title=title, title_justify="left")
    for position, column in enumerate(columns):
        grid.add_column(column, overflow="fold", no_wrap=position == 0)
    for row in rows:
        grid.add_row(*(escape(_cell(row.get(column))) for column in columns))
    return grid


def key_created_lines(key: Mapping[str, Any]) -> list[str]:
    """What a person sees after `keys create`: the key, its secret once, and a warning."""
    return [
        f"Created key {key['id']} ({key['name']}, team {key['team']}, scopes: {_cell(key['scopes']) or 'none'})",
        f"Secret: {key['key']}",
        "Store the secret now: LeadRelay keeps only its hash and will not show it again.",
    ]


def whoami_line(key: Mapping[str, Any]) -> str:
    """One line about the calling key."""
    return f"{key['id']} ({key['name']}), team {key['team']}, scopes: {_cell(key['scopes']) or 'none'}"


def author_label(author: Mapping[str, Any] | None) -> str:
    """Who wrote a version: name and team."""
    author = author or {}
    return f"{author.get('name', '?')} ({author.get('team', '?')})"


def version_lines(version: Mapping[str, Any]) -> list[str]:
    """The head of `agreements show`: kind, version, status, author, approvals."""
    lines = [
        f"{version['kind']} version {version['version']}: {version['status']}",
        f"author: {author_label(version.get('author'))}",
        f"created: {version.get('created_at')}",
    ]
    if version.get("activated_at"):
        lines.append(f"activated: {version['activated_at']}")
    if version.get("note"):
        lines.append(f"note: {version['note']}")
    lines.append(f"approved by: {_cell(version.get('approved_teams')) or 'nobody yet'}")
    return lines


def document_yaml(document: Any) -> str:
    """A document as YAML, keys in their order."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def change_rows(changes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Diff changes with their values as compact JSON, so a table shows `null` and nested values."""
    return [
        {
            "op": change.get("op"),
            "path": change.get("path"),
            "from": json.dumps(change.get("from"), ensure_ascii=False) if "from" in change else "",
            "to": json.dumps(change.get("to"), ensure_ascii=False) if "to" in change else "",
        }
        for change in changes
    ]
