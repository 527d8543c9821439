"""`leadrelay receiver`: a local endpoint for reps' notification channels that verifies and prints what arrives.

`make run` points every demo rep's webhook channel at it, so a developer sees reps being told. Any
path takes a POST: a Standard Webhooks signed notification is verified with the secret (204, or 401
when the signature is wrong); an unsigned Slack-style message (`{"text": ...}`) is printed as it is.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
import uvicorn
from rich.markup import escape
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from leadrelay.cli import output
from leadrelay.cli.http import CliError, ExitCode
from leadrelay.demo import DEFAULT_RECEIVER_PORT, DEMO_RECEIVER_SECRET, RECEIVER_SECRET_VARIABLE

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAX_TEXT = 500


@dataclass(frozen=True)
class Notice:
    """What one POST brought, as printed: whether it verified, and the parts a person looks for."""

    verified: bool
    path: str
    webhook_id: str | None = None
    type: str | None = None
    rep_id: str | None = None
    lead_id: str | None = None
    company: str | None = None
    grade: str | None = None
    rule: str | None = None
    sla_due_at: str | None = None
    text: str | None = None


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)[:MAX_TEXT]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _rule(body: Mapping[str, Any]) -> str | None:
    """The matched rule, wherever the body's explanation carries it (the matched rule is the path's last)."""
    explanation = _mapping(body.get("explanation"))
    rule = body.get("rule") or explanation.get("rule") or explanation.get("matched_rule")
    path = explanation.get("rule_path") or body.get("rule_path")
    if rule is None and isinstance(path, list) and path:
        rule = path[-1]
    return _text(rule)


def _sla_due(body: Mapping[str, Any]) -> str | None:
    sla = body.get("sla")
    if isinstance(sla, dict):
        return _text(sla.get("due_at") or sla.get("deadline") or sla.get("respond_by"))
    return _text(sla or body.get("sla_due_at"))


def notice_of(body: Any, *, verified: bool, path: str, webhook_id: str | None) -> Notice:
    """The printable parts of a notification body; anything missing or oddly shaped is left out, never an error."""
    body = _mapping(body)
    lead = _mapping(body.get("lead"))
    account = _mapping(body.get("account"))
    return Notice(
        verified=verified,
        path=path,
        webhook_id=webhook_id,
        type=_text(body.get("type")),
        rep_id=_text(body.get("rep_id") or _mapping(body.get("rep")).get("id")),
        lead_id=_text(lead.get("id") or lead.get("lead_id") or body.get("lead_id")),
        company=_text(lead.get("company") or account.get("name")),
        grade=_text(body.get("grade") or lead.get("grade")),
        rule=_rule(body),
        sla_due_at=_sla_due(body),
        text=_text(body.get("text")),
    )


def notice_line(notice: Notice) -> str:
    """One line of rich markup for a person: verified or not first, then what the rep was told."""
    mark = "[bold green]verified[/]" if notice.verified else "[bold red]NOT verified[/]"
    if notice.webhook_id is None and notice.text is not None:
        mark = "[bold yellow]slack (unsigned)[/]"
    parts = [mark, escape(notice.webhook_id or "-"), escape(notice.path)]
    named = {
        "type": notice.type,
        "rep": notice.rep_id,
        "lead": notice.lead_id,
        "company": notice.company,
        "grade": notice.grade,
        "rule": notice.rule,
        "SLA due": notice.sla_due_at,
    }
    parts.extend(f"{label} [bold]{escape(value)}[/]" for label, value in named.items() if value is not None)
    if notice.text is not None:
        parts.append(f"text: {escape(notice.text)}")
    return "  ".join(parts)


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # not JSON (or not UTF-8): printed as a body without the parts
        return None


def receiver_app(*, secret: str, show: Callable[[Notice], None]) -> Starlette:
    """The receiver: every POST is verified with `secret`, shown, and answered 204 or 401."""
    webhook = Webhook(secret)

    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = {name: value for name, value in request.headers.items() if name in SIGNATURE_HEADERS}
        parsed = _parsed(body)
        signed = bool(headers)
        if not signed and isinstance(parsed, dict) and "text" in parsed:
            # A Slack incoming webhook is not signed: its URL is the secret.
            notice = notice_of(parsed, verified=False, path=request.url.path, webhook_id=None)
            await run_in_threadpool(show, notice)
            return Response(status_code=204)
        try:
            webhook.verify(body, headers, json_parse=False)
            verified = True
        except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature or body
            verified = False
        notice = notice_of(parsed, verified=verified, path=request.url.path, webhook_id=headers.get("webhook-id"))
        await run_in_threadpool(show, notice)
        return Response(status_code=204 if verified else 401)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def _show_json(notice: Notice) -> None:
    output.stdout.file.write(json.dumps(asdict(notice), ensure_ascii=False) + "\n")
    output.stdout.file.flush()


def _show_text(notice: Notice) -> None:
    output.stdout.print(notice_line(notice))


def receiver(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = DEFAULT_RECEIVER_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    secret: Annotated[
        str,
        typer.Option(
            "--secret",
            envvar=RECEIVER_SECRET_VARIABLE,
            show_envvar=True,
            show_default=False,
            help="The whsec_ secret the channels sign with. Default: the documented demo secret `make run` seeds.",
        ),
    ] = DEMO_RECEIVER_SECRET,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per notification.")] = False,
) -> None:
    """Listen for reps' notifications (POST on any path), verify their Standard Webhooks signatures and print
    each: verified or NOT verified, webhook-id, rep, lead company, grade, rule and SLA deadline. Answers
    204, or 401 to a bad signature. Ctrl-C stops it."""
    try:
        app = receiver_app(secret=secret, show=_show_json if as_json else _show_text)
    except (ValueError, EmptyWebhookSecretError) as error:  # not base64 after whsec_, or empty
        raise CliError(ExitCode.USAGE, f"--secret is not a whsec_ secret: {error}") from None
    if not as_json:
        output.stderr.print(f"leadrelay receiver listening on http://{host}:{port} (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
