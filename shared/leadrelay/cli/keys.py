"""`leadrelay keys ...` and `leadrelay whoami`: the key registry on intake."""

from typing import Annotated, Any

import typer

from leadrelay.cli import output
from leadrelay.cli.http import ServiceClient, service_url
from leadrelay.cli.options import AnyServiceUrl, IntakeUrl, JsonFlag, KeyOption, require_key

app = typer.Typer(help="API keys: create, list, show and revoke them (on intake; scope admin).", no_args_is_help=True)

CREATED_FIELDS = ("id", "name", "team", "scopes", "key")
LISTED_COLUMNS = ("id", "name", "team", "scopes", "created_at", "revoked_at")


def _intake(url: str | None, key: str | None) -> ServiceClient:
    return ServiceClient(service_url("intake", url), require_key(key))


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. hubspot-sync.")],
    team: Annotated[str, typer.Option("--team", help="The team it acts for: marketing, sales, ops or integration.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope, e.g. leads:write (repeat it; docs/api.md lists them)."),
    ] = None,
    url: IntakeUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key; its secret is printed this once."""
    with _intake(url, key) as intake:
        created = intake.json("POST", "/v1/keys", json={"name": name, "team": team, "scopes": scope or []})
    if as_json:
        output.emit_json({field: created[field] for field in CREATED_FIELDS})
        return
    for line in output.key_created_lines(created):
        output.stdout.print(line, markup=False)


@app.command("list")
def list_keys(url: IntakeUrl = None, key: KeyOption = None, as_json: JsonFlag = False) -> None:
    """Every key, newest first, revoked ones included (never a secret)."""
    with _intake(url, key) as intake:
        answer: dict[str, Any] = intake.json("GET", "/v1/keys")
    if as_json:
        output.emit_json(answer)
        return
    output.stdout.print(output.table(answer["keys"], LISTED_COLUMNS))


@app.command()
def show(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id, e.g. key_3f9a1c2b7d4e.")],
    url: IntakeUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One key (never its secret)."""
    with _intake(url, key) as intake:
        shown = intake.json("GET", f"/v1/keys/{key_id}")
    if as_json:
        output.emit_json(shown)
        return
    output.stdout.print(output.table([shown], LISTED_COLUMNS))


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    url: IntakeUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: refused at once by intake, and by every service within 10 seconds."""
    with _intake(url, key) as intake:
        revoked = intake.json("DELETE", f"/v1/keys/{key_id}")
    if as_json:
        output.emit_json(revoked)
        return
    output.stdout.print(f"Revoked key {revoked['id']} ({revoked['name']}) at {revoked['revoked_at']}", markup=False)


def whoami(url: AnyServiceUrl = None, key: KeyOption = None, as_json: JsonFlag = False) -> None:
    """The key you are using, as a service sees it (any service's --url)."""
    with ServiceClient(service_url("intake", url), require_key(key)) as service:
        me = service.json("GET", "/v1/whoami")
    if as_json:
        output.emit_json(me)
        return
    output.stdout.print(output.whoami_line(me), markup=False)
