"""`leadrelay`: the command line for a running LeadRelay stack (docs/cli.md)."""

import typer

from leadrelay.cli import agreements, demo, dlq, keys, output, receiver
from leadrelay.cli.http import CliError, ExitCode

app = typer.Typer(
    name="leadrelay",
    help="Talk to a running LeadRelay stack. Exit codes: 0 ok, 1 refused, 2 usage, 3 unreachable or 5xx, 4 auth.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.command("whoami")(keys.whoami)
app.add_typer(dlq.app, name="dlq")
app.add_typer(agreements.app, name="agreements")
app.command("demo")(demo.demo)
app.command("receiver")(receiver.receiver)


def main() -> None:
    """Entry point of `leadrelay`: a CliError becomes a short message and its exit code."""
    try:
        app(prog_name="leadrelay")
    except CliError as error:
        output.show_error(error)
        raise SystemExit(error.code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


__all__ = ["ExitCode", "app", "main"]
