"""Talking to one LeadRelay service over HTTP: where it is, the key, and refusals as exit codes."""

import os
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType
from typing import Any, Self

import httpx


class ExitCode(IntEnum):
    """What `leadrelay` exits with; docs/cli.md documents the table."""

    OK = 0
    REFUSED = 1  # the service refused the request (a 4xx other than 401/403)
    USAGE = 2  # typer's own usage errors, and a missing key or an unreadable file
    UNREACHABLE = 3  # no answer, or a 5xx
    AUTH = 4  # 401 or 403


class CliError(Exception):
    """A failure to report in a few lines, without a traceback, and exit with `code`."""

    def __init__(self, code: ExitCode, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or []


@dataclass(frozen=True)
class ServiceAddress:
    """Where a service listens by default, and the environment variable that overrides it."""

    env: str
    default: str


SERVICES = {
    "intake": ServiceAddress("LEADRELAY_INTAKE_URL", "http://127.0.0.1:8000"),
    "scoring": ServiceAddress("LEADRELAY_SCORING_URL", "http://127.0.0.1:8001"),
    "router": ServiceAddress("LEADRELAY_ROUTER_URL", "http://127.0.0.1:8002"),
    "sla-monitor": ServiceAddress("LEADRELAY_SLA_MONITOR_URL", "http://127.0.0.1:8003"),
}


def service_url(service: str, override: str | None) -> str:
    """`--url` if given, else the service's environment variable, else its development address."""
    address = SERVICES[service]
    return (override or os.environ.get(address.env) or address.default).rstrip("/")


def exit_code_for(status: int) -> ExitCode:
    """The exit code for an HTTP error status."""
    if status in (401, 403):
        return ExitCode.AUTH
    if status >= 500:
        return ExitCode.UNREACHABLE
    return ExitCode.REFUSED


def refusal(status: int, reason: str, body: Any) -> CliError:
    """An error answer as a CliError: the problem's title and detail, then one line per failing field."""
    code = exit_code_for(status)
    if not isinstance(body, dict):
        return CliError(code, f"{status} {reason}")
    title = body.get("title") or reason
    message = f"{title} ({status})"
    if body.get("detail"):
        message += f": {body['detail']}"
    details = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            where = error.get("pointer") or error.get("field") or "?"
            details.append(f"{where}: {error.get('message', 'invalid')}")
    return CliError(code, message, details)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class ServiceClient:
    """The one HTTP client of an invocation, bound to one service and one key."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise CliError(ExitCode.USAGE, f"--url {url!r} is not a valid URL: {exc}") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self._client.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return any answer, error answers included; only no answer raises CliError."""
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CliError(ExitCode.UNREACHABLE, f"{self.url} did not answer within {self.timeout:g} s") from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(ExitCode.UNREACHABLE, f"could not reach {self.url}: {reason}") from None

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; an error answer or no answer raises CliError."""
        response = self.send(method, path, **kwargs)
        if response.is_error:
            raise refusal(response.status_code, response.reason_phrase, _body(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return the JSON answer."""
        response = self.request(method, path, **kwargs)
        body = _body(response)
        if body is None:
            raise CliError(ExitCode.UNREACHABLE, f"{self.url}{path} answered {response.status_code} without JSON")
        return body
