"""`leadrelay agreements ...`: draft, read, compare, export, import and sign versioned agreements."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from leadrelay.cli import output
from leadrelay.cli.http import CliError, ExitCode, ServiceClient, service_url
from leadrelay.cli.options import AgreementUrl, JsonFlag, KeyOption, require_key

app = typer.Typer(
    help="Agreements (icp on scoring, routing on router, sla on sla-monitor): versions, diffs, sign-off.",
    no_args_is_help=True,
)


class Kind(StrEnum):
    """A kind of agreement, served by the service that owns it."""

    ICP = "icp"
    ROUTING = "routing"
    SLA = "sla"


OWNERS = {Kind.ICP: "scoring", Kind.ROUTING: "router", Kind.SLA: "sla-monitor"}
ACTIVE = "active"
LISTED_COLUMNS = ("version", "status", "author", "created_at", "activated_at", "approved_teams", "note")
HISTORY_COLUMNS = ("action", "name", "team", "key_id", "at", "reason")

KindArgument = Annotated[Kind, typer.Argument(metavar="KIND", help="icp, routing or sla.")]
VersionArgument = Annotated[int, typer.Argument(min=1, metavar="VERSION", help="A version number.")]
ReadableFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, metavar="FILE")]


def version_reference(value: str) -> str:
    """A version number or `active`."""
    if value != ACTIVE and not (value.isdigit() and int(value) >= 1):
        raise typer.BadParameter(f"{value!r} is neither a version number nor {ACTIVE!r}")
    return value


VersionOrActive = Annotated[
    str,
    typer.Argument(metavar="VERSION|active", callback=version_reference, help="A version number, or active."),
]


def _owner(kind: Kind, url: str | None, key: str | None) -> ServiceClient:
    return ServiceClient(service_url(OWNERS[kind], url), require_key(key))


def _version_path(kind: Kind, reference: str) -> str:
    return f"/v1/{kind}/active" if reference == ACTIVE else f"/v1/{kind}/versions/{reference}"


def _emit_version(version: dict[str, Any], as_json: bool, headline: str | None = None) -> None:
    if as_json:
        output.emit_json(version)
        return
    if headline:
        output.stdout.print(headline, markup=False)
    for line in output.version_lines(version):
        output.stdout.print(line, markup=False)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CliError(ExitCode.USAGE, f"cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise CliError(ExitCode.USAGE, f"{path} must hold a mapping with `document` (and optionally `note`)")
    return loaded


@app.command("list")
def list_versions(
    kind: KindArgument, url: AgreementUrl = None, key: KeyOption = None, as_json: JsonFlag = False
) -> None:
    """Every version of an agreement with its status."""
    with _owner(kind, url, key) as owner:
        answer: dict[str, Any] = owner.json("GET", f"/v1/{kind}/versions")
    if as_json:
        output.emit_json(answer)
        return
    rows = [{**version, "author": output.author_label(version.get("author"))} for version in answer["versions"]]
    output.stdout.print(output.table(rows, LISTED_COLUMNS, title=f"{kind} versions"))


@app.command()
def show(
    kind: KindArgument,
    version: VersionOrActive,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One version (or the active one): status, approvals, history and the document."""
    with _owner(kind, url, key) as owner:
        shown: dict[str, Any] = owner.json("GET", _version_path(kind, version))
    if as_json:
        output.emit_json(shown)
        return
    _emit_version(shown, as_json=False)
    if shown.get("history"):
        output.stdout.print(output.table(shown["history"], HISTORY_COLUMNS, title="history"))
    output.stdout.print("document:", markup=False)
    output.stdout.print(output.document_yaml(shown.get("document")), markup=False, end="")


@app.command()
def diff(
    kind: KindArgument,
    old: Annotated[int, typer.Argument(min=1, metavar="A", help="The version to compare from.")],
    new: Annotated[int, typer.Argument(min=1, metavar="B", help="The version to compare to.")],
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """What changed from version A to version B, path by path."""
    with _owner(kind, url, key) as owner:
        answer: dict[str, Any] = owner.json("GET", f"/v1/{kind}/versions/{old}/diff/{new}")
    if as_json:
        output.emit_json(answer)
        return
    changes = answer.get("changes") or []
    if not changes:
        output.stdout.print(f"{kind} versions {old} and {new} hold the same document", markup=False)
        return
    title = f"{kind} {old} -> {new}: {len(changes)} change(s)"
    output.stdout.print(output.table(output.change_rows(changes), ("op", "path", "from", "to"), title=title))


@app.command()
def export(
    kind: KindArgument,
    version: VersionOrActive,
    to: Annotated[
        Path | None, typer.Option("-o", "--output", dir_okay=False, help="Write to FILE, not stdout.")
    ] = None,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A version's document as YAML (to stdout, or to a file with -o)."""
    with _owner(kind, url, key) as owner:
        number = version
        if version == ACTIVE:
            number = str(owner.json("GET", f"/v1/{kind}/active")["version"])
        text = owner.request("GET", f"/v1/{kind}/versions/{number}/export").text
    if to is not None:
        try:
            to.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(ExitCode.USAGE, f"cannot write {to}: {exc}") from None
    if as_json:
        output.emit_json({"kind": kind, "version": int(number), **({"path": str(to)} if to else {"yaml": text})})
    elif to is not None:
        output.stdout.print(f"Wrote {kind} version {number} to {to}", markup=False)
    else:
        output.stdout.print(text, markup=False, end="")


@app.command("import")
def import_(
    kind: KindArgument,
    file: ReadableFile,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A new draft from a YAML export (as `export` writes it)."""
    with _owner(kind, url, key) as owner:
        drafted: dict[str, Any] = owner.json(
            "POST",
            f"/v1/{kind}/versions:import",
            content=file.read_bytes(),
            headers={"Content-Type": "application/yaml"},
        )
    _emit_version(drafted, as_json, headline=f"Imported {file} as {kind} version {drafted.get('version')}")


@app.command()
def draft(
    kind: KindArgument,
    file: ReadableFile,
    note: Annotated[str | None, typer.Option("--note", help="Why this version (overrides the file's note).")] = None,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A new draft from a YAML or JSON file holding `document` and `note`."""
    content = _read_mapping(file)
    if "document" not in content:
        raise CliError(ExitCode.USAGE, f"{file} must hold a mapping with `document` (and optionally `note`)")
    body = {"document": content["document"], "note": note if note is not None else content.get("note", "")}
    with _owner(kind, url, key) as owner:
        drafted: dict[str, Any] = owner.json("POST", f"/v1/{kind}/versions", json=body)
    _emit_version(drafted, as_json, headline=f"Drafted {kind} version {drafted.get('version')}")


@app.command()
def approve(
    kind: KindArgument,
    version: VersionArgument,
    note: Annotated[str | None, typer.Option("--note", help="A note kept in the history.")] = None,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a version for your key's team; it activates once every required team approved."""
    with _owner(kind, url, key) as owner:
        approved: dict[str, Any] = owner.json(
            "POST", f"/v1/{kind}/versions/{version}/approvals", json={"note": note} if note is not None else {}
        )
    _emit_version(approved, as_json, headline=f"Approved {kind} version {version}")


@app.command()
def reject(
    kind: KindArgument,
    version: VersionArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the history.")],
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a version: it never activates."""
    with _owner(kind, url, key) as owner:
        rejected: dict[str, Any] = owner.json(
            "POST", f"/v1/{kind}/versions/{version}/rejections", json={"reason": reason}
        )
    _emit_version(rejected, as_json, headline=f"Rejected {kind} version {version}")


@app.command()
def preview(
    kind: KindArgument,
    version: VersionArgument,
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Leads received in the last DAYS days.")] = 30,
    url: AgreementUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """What a version would change (icp only): MQLs, the A1-D4 matrix and sources, before and after; changes nothing."""
    if kind is not Kind.ICP:
        raise CliError(ExitCode.USAGE, f"only icp versions can be previewed, not {kind}")
    with _owner(kind, url, key) as owner:
        answer: dict[str, Any] = owner.json("POST", f"/v1/{kind}/versions/{version}/preview", params={"days": days})
    if as_json:
        output.emit_json(answer)
        return
    mql = answer["mql"]
    output.stdout.print(
        f"icp version {version} against {answer['compared_with']}: {answer['leads']} lead(s) of the last "
        f"{answer['days']} days; MQLs {mql['before']} -> {mql['after']} ({mql['after'] - mql['before']:+d}); "
        f"{answer['flips']} decision(s) flip",
        markup=False,
    )
    before, after = answer["grades"]["before"], answer["grades"]["after"]
    matrix = [
        {"fit": fit, **{str(level): _shift(before[f"{fit}{level}"], after[f"{fit}{level}"]) for level in range(1, 5)}}
        for fit in "ABCD"
    ]
    output.stdout.print(output.table(matrix, ("fit", "1", "2", "3", "4"), title="grades (before -> after)"))
    sources = [{**row, "mql": _shift(row["mql_before"], row["mql_after"])} for row in answer["sources"]]
    output.stdout.print(output.table(sources, ("source", "leads", "mql"), title="MQLs per source (before -> after)"))
    if answer["sample"]:
        flips = [
            {
                "lead_id": flip["lead_id"],
                "source": flip["source"],
                "before": f"{flip['before']['grade']} {'MQL' if flip['before']['mql'] else 'not MQL'}",
                "after": f"{flip['after']['grade']} {'MQL' if flip['after']['mql'] else 'not MQL'}",
                "criteria": [f"{c['criterion']} {c['before']} -> {c['after']}" for c in flip["criteria"]],
                "why": flip["after"]["mql_reason"],
            }
            for flip in answer["sample"]
        ]
        title = f"decisions that flip ({len(flips)} of {answer['flips']})"
        columns = ("lead_id", "source", "before", "after", "criteria", "why")
        output.stdout.print(output.table(flips, columns, title=title))


def _shift(before: int, after: int) -> str:
    return str(before) if before == after else f"{before} -> {after}"
