"""Options every command shares: where the service is, the key, and --json."""

from typing import Annotated

import typer

from leadrelay.cli.http import SERVICES, CliError, ExitCode

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the answer as one JSON document (for scripts).")]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="LEADRELAY_API_KEY",
        show_envvar=True,
        show_default=False,
        help="The API key (prefer the environment variable: a command line is visible to other users).",
    ),
]


def _url_help(*services: str) -> str:
    defaults = "; ".join(f"{name}: ${SERVICES[name].env} or {SERVICES[name].default}" for name in services)
    return f"Base URL of the service. Default: {defaults}."


IntakeUrl = Annotated[str | None, typer.Option("--url", show_default=False, help=_url_help("intake"))]
AnyServiceUrl = Annotated[
    str | None,
    typer.Option(
        "--url", show_default=False, help="Base URL of any LeadRelay service. Default: $LEADRELAY_INTAKE_URL or intake."
    ),
]
AgreementUrl = Annotated[
    str | None, typer.Option("--url", show_default=False, help=_url_help("scoring", "router", "sla-monitor"))
]


def require_key(key: str | None) -> str:
    """The key, or a usage error that says where to put it."""
    if not key:
        raise CliError(ExitCode.USAGE, "no API key: set LEADRELAY_API_KEY or pass --key")
    return key
