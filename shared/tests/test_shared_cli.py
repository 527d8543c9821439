"""The `leadrelay` CLI's pure parts: refusals as exit codes, URLs, formatting; agreements requests on a fake transport.

The agreements endpoints are checked against their fixed contract with httpx's MockTransport; the
CLI against real processes is tests/e2e/test_identity.py and tests/e2e/test_dlq_cli.py.
"""

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from leadrelay.cli import app, output
from leadrelay.cli.http import CliError, ExitCode, refusal, service_url

runner = CliRunner()


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, ExitCode.REFUSED), (404, ExitCode.REFUSED), (409, ExitCode.REFUSED), (422, ExitCode.REFUSED),
     (401, ExitCode.AUTH), (403, ExitCode.AUTH), (500, ExitCode.UNREACHABLE), (503, ExitCode.UNREACHABLE)],
)  # fmt: skip
def test_an_error_status_maps_to_its_documented_exit_code(status: int, code: ExitCode) -> None:
    assert refusal(status, "reason", {"title": "t", "status": status}).code == code


def test_a_problem_reads_as_title_status_detail_and_one_line_per_field() -> None:
    body = {
        "title": "Invalid request",
        "status": 422,
        "detail": "team: Input should be 'marketing'",
        "errors": [{"field": "team", "pointer": "/team", "message": "Input should be 'marketing'"}],
    }
    error = refusal(422, "Unprocessable Content", body)
    assert error.message == "Invalid request (422): team: Input should be 'marketing'"
    assert error.details == ["/team: Input should be 'marketing'"]


def test_an_answer_that_is_not_a_problem_still_reads_as_its_status() -> None:
    error = refusal(502, "Bad Gateway", None)
    assert (error.code, error.message, error.details) == (ExitCode.UNREACHABLE, "502 Bad Gateway", [])


def test_url_comes_from_the_option_then_the_environment_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADRELAY_ROUTER_URL", raising=False)
    assert service_url("router", None) == "http://127.0.0.1:8002"
    monkeypatch.setenv("LEADRELAY_ROUTER_URL", "http://router.internal:80/")
    assert service_url("router", None) == "http://router.internal:80"
    assert service_url("router", "http://elsewhere:9") == "http://elsewhere:9"


def _rendered(renderable: Any, width: int = 60) -> str:
    console = Console(file=io.StringIO(), width=width, highlight=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_errors_print_server_text_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(file=io.StringIO(), width=200, highlight=False)
    monkeypatch.setattr(output, "stderr", console)
    output.show_error(CliError(ExitCode.REFUSED, "Invalid request (422): [bold]x[/bold]", ["/rules/0: bad"]))
    assert console.file.getvalue() == "Error: Invalid request (422): [bold]x[/bold]\n  /rules/0: bad\n"  # type: ignore[attr-defined]


def test_a_narrow_table_wraps_cells_but_never_cuts_the_id() -> None:
    row = {"id": "key_3f9a1c2b7d4e", "name": "a rather long name for a key", "scopes": ["leads:read", "admin"]}
    text = _rendered(output.table([row], ("id", "name", "scopes")), width=40)
    assert "key_3f9a1c2b7d4e" in text
    assert "…" not in text


def test_a_new_key_is_shown_with_its_secret_once_and_a_warning() -> None:
    lines = output.key_created_lines(
        {"id": "key_1", "name": "crm", "team": "sales", "scopes": ["leads:read"], "key": "lr_secret"}
    )
    assert sum(line.count("lr_secret") for line in lines) == 1
    assert "Store the secret now" in lines[-1]


def test_diff_values_show_as_json_so_null_and_nested_values_are_visible() -> None:
    rows = output.change_rows([{"op": "replace", "path": "/weights/title", "from": None, "to": {"cto": 20}}])
    assert rows == [{"op": "replace", "path": "/weights/title", "from": "null", "to": '{"cto": 20}'}]


VERSION: dict[str, Any] = {
    "kind": "icp",
    "version": 3,
    "status": "draft",
    "note": "Q3",
    "document": {"min_score": 60},
    "author": {"key_id": "key_1", "name": "ops-lead", "team": "ops"},
    "created_at": "2026-11-27T10:00:00Z",
    "activated_at": None,
    "approvals": [],
    "approved_teams": [],
    "history": [
        {"action": "drafted", "key_id": "key_1", "name": "ops-lead", "team": "ops", "at": "2026", "reason": None}
    ],
}


@pytest.fixture
def fake_scoring(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the CLI sends, answered as scoring's agreements API would."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if request.headers.get("authorization") != "Bearer lr_test":
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "detail": "Missing API key."})
        if path.endswith("/export"):
            return httpx.Response(200, text="min_score: 60\n", headers={"Content-Type": "application/yaml"})
        if path.endswith("/diff/3"):
            changes = [{"op": "replace", "path": "/min_score", "from": 50, "to": 60}]
            return httpx.Response(200, json={"kind": "icp", "from": 2, "to": 3, "changes": changes})
        if path == "/v1/icp/versions" and request.method == "GET":
            return httpx.Response(200, json={"versions": [VERSION]})
        if path == "/v1/icp/versions/9":
            return httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": "No icp version 9."})
        status = 201 if request.method == "POST" and path.endswith(("versions", "versions:import")) else 200
        return httpx.Response(status, json=VERSION)

    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    monkeypatch.setenv("LEADRELAY_API_KEY", "lr_test")
    monkeypatch.setenv("LEADRELAY_SCORING_URL", "http://scoring.test")
    return seen


def _cli(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def _body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_agreement_commands_send_the_contract_requests(fake_scoring: list[httpx.Request], tmp_path: Path) -> None:
    draft = tmp_path / "icp.yaml"
    draft.write_text("note: Q3\ndocument:\n  min_score: 60\n")
    exported = tmp_path / "export.yaml"

    _cli("agreements", "draft", "icp", str(draft))
    _cli("agreements", "draft", "icp", str(draft), "--note", "override")
    _cli("agreements", "list", "icp")
    _cli("agreements", "show", "icp", "active")
    _cli("agreements", "show", "icp", "3")
    _cli("agreements", "diff", "icp", "2", "3")
    _cli("agreements", "export", "icp", "3", "-o", str(exported))
    _cli("agreements", "import", "icp", str(exported))
    _cli("agreements", "approve", "icp", "3")
    _cli("agreements", "approve", "icp", "3", "--note", "checked")
    _cli("agreements", "reject", "icp", "3", "--reason", "too strict")

    sent = [(request.method, request.url.path) for request in fake_scoring]
    assert sent == [
        ("POST", "/v1/icp/versions"),
        ("POST", "/v1/icp/versions"),
        ("GET", "/v1/icp/versions"),
        ("GET", "/v1/icp/active"),
        ("GET", "/v1/icp/versions/3"),
        ("GET", "/v1/icp/versions/2/diff/3"),
        ("GET", "/v1/icp/versions/3/export"),
        ("POST", "/v1/icp/versions:import"),
        ("POST", "/v1/icp/versions/3/approvals"),
        ("POST", "/v1/icp/versions/3/approvals"),
        ("POST", "/v1/icp/versions/3/rejections"),
    ]
    assert {request.url.host for request in fake_scoring} == {"scoring.test"}
    assert _body(fake_scoring[0]) == {"document": {"min_score": 60}, "note": "Q3"}
    assert _body(fake_scoring[1])["note"] == "override"
    assert exported.read_text() == "min_score: 60\n"
    assert fake_scoring[7].headers["content-type"] == "application/yaml"
    assert fake_scoring[7].content == b"min_score: 60\n"
    assert [_body(request) for request in fake_scoring[8:]] == [{}, {"note": "checked"}, {"reason": "too strict"}]


def test_agreement_json_output_is_the_answer(fake_scoring: list[httpx.Request]) -> None:
    assert json.loads(_cli("agreements", "show", "icp", "3", "--json").stdout) == VERSION
    assert (
        json.loads(_cli("agreements", "diff", "icp", "2", "3", "--json").stdout)["changes"][0]["path"] == "/min_score"
    )
    assert json.loads(_cli("agreements", "export", "icp", "active", "--json").stdout) == {
        "kind": "icp",
        "version": 3,
        "yaml": "min_score: 60\n",
    }


def test_agreement_refusals_carry_their_exit_codes(
    fake_scoring: list[httpx.Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CliError) as missing:
        _cli("agreements", "show", "icp", "9")
    assert (missing.value.code, missing.value.message) == (ExitCode.REFUSED, "Not Found (404): No icp version 9.")
    monkeypatch.setenv("LEADRELAY_API_KEY", "lr_wrong")
    with pytest.raises(CliError) as refused:
        _cli("agreements", "list", "icp")
    assert refused.value.code == ExitCode.AUTH


def test_agreement_usage_errors_exit_2(fake_scoring: list[httpx.Request], tmp_path: Path) -> None:
    assert runner.invoke(app, ["agreements", "show", "crm", "1"]).exit_code == 2
    assert runner.invoke(app, ["agreements", "show", "icp", "latest"]).exit_code == 2
    assert runner.invoke(app, ["agreements", "approve", "icp", "0"]).exit_code == 2
    assert runner.invoke(app, ["agreements", "draft", "icp", str(tmp_path / "missing.yaml")]).exit_code == 2
    no_document = tmp_path / "plain.yaml"
    no_document.write_text("min_score: 60\n")
    with pytest.raises(CliError) as error:
        _cli("agreements", "draft", "icp", str(no_document))
    assert error.value.code == ExitCode.USAGE
    assert fake_scoring == []
