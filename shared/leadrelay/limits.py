"""The edge every service shares: body size, the API key before the body, content types, a rate per key, strict JSON.

`EdgeLimits` is a pure ASGI middleware (it never buffers a body it refuses). In order, a request is:

1. refused with 413 when it declares a `Content-Length` over `MAX_REQUEST_BYTES`, before anything is read;
2. on `/v1/...` (except `/v1/webhooks/...`, which senders sign instead), refused with 401 without a
   live API key, and with 429 and `Retry-After` over its key's rate, still before the body is read
   (the route's `require_scopes` then checks the scopes: 403);
3. once routing chose the route and the route reads its body: refused with 415 when the route
   parses its body (a JSON model, or a form) and the body is of another type (a route that reads
   its body itself, like the YAML import or the webhooks, checks the type itself); for a JSON
   route, read up to the cap and parsed strictly (400 `malformed-json`: not UTF-8, not JSON,
   `NaN`/`Infinity`, a number out of range, nesting past `MAX_JSON_DEPTH`). Every body is counted
   as it is read and cut at the cap (413), chunked or not: no more than the cap is ever held.

Refusals from `receive` are ProblemHTTPExceptions: FastAPI's body reading lets HTTPExceptions
through to the problem handlers, and it reads the body before it checks the route's dependencies,
so 400/413/415 come before a 403 for a missing scope, as FastAPI's own 400 always did.
"""

import json
import math
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadrelay import apikeys
from leadrelay.db import is_unavailable
from leadrelay.problems import (
    Problem,
    ProblemHTTPException,
    database_unavailable,
    malformed_json,
    problem_response,
)
from leadrelay.settings import ServiceSettings

# Deeper than any body LeadRelay takes; free-form values have their own, lower bound
# (leadrelay.validation.MAX_DEPTH). Bounded here so no parser or serializer downstream recurses far.
MAX_JSON_DEPTH = 32

FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_AUTHENTICATED_PREFIX = "/v1/"
_SIGNED_PREFIX = "/v1/webhooks/"  # authenticated by the sender's signature, in the route


class RateLimiter:
    """Token buckets by key: `rate` tokens a second up to `burst`, in this process; a rate of 0 admits everything.

    `acquire(key)` takes a token and answers 0, or answers how many seconds until the key has one.
    One limiter serves any kind of key (an API key id, a webhook source name).
    """

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 when admitted, else the seconds until a token is there."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, counted = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) / self.rate

    def _remember(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            # Bounded: a bucket refilled to the brim holds nothing worth keeping.
            refill = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()
        self._buckets[key] = (tokens, now)


def media_type(headers: Headers) -> str:
    """The request's media type, lower-cased, without parameters ("" without a Content-Type)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    """Whether a media type is JSON: application/json or an application/...+json type."""
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class _Refused(ValueError):
    """Something json.loads would take that LeadRelay does not."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"the number {text[:32]} is out of range")
    return number


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def loads(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON body strictly, or raise ProblemHTTPException (400 malformed-json) saying what is wrong.

    Stricter than json.loads: UTF-8 only (RFC 8259), no NaN or Infinity, no number that is not a
    finite double, nesting at most `max_depth` deep. For routes that read their body themselves.
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except UnicodeDecodeError:
        message = "the body is not UTF-8 text"
    except json.JSONDecodeError as exc:
        message = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    except _Refused as exc:
        message = str(exc)
    except ValueError:  # int(): more digits than the interpreter converts
        message = "a number in the body has too many digits"
    except RecursionError:
        message = f"the body is nested more than {max_depth} levels deep"
    else:
        # Each level opens a bracket: a body with few of them needs no walk.
        few_brackets = body.count(b"{") + body.count(b"[") <= max_depth
        if few_brackets or not isinstance(value, dict | list) or _depth_within(value, max_depth):
            return value
        message = f"the body is nested more than {max_depth} levels deep"
    raise ProblemHTTPException(malformed_json(message))


def accepted_media_types(route: Any) -> frozenset[str] | None:
    """What a route's body may be, or None when the route takes no body FastAPI parses."""
    if not isinstance(route, APIRoute) or route.body_field is None:
        return None
    if isinstance(route.body_field.field_info, params.Form):
        return FORM_MEDIA_TYPES
    return frozenset({"application/json"})


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


class EdgeLimits:
    """The ASGI middleware in front of every service's routes (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        self.max_bytes = settings.max_request_bytes
        self.limiter = RateLimiter(settings.rate_limit_per_key_per_second, settings.rate_limit_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = _content_length(headers)
        if length is not None and length > self.max_bytes:
            await problem_response(_too_large(self.max_bytes), Request(scope))(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(_AUTHENTICATED_PREFIX) and not path.startswith(_SIGNED_PREFIX):
            refused = await self._admit(scope, headers)
            if refused is not None:
                await refused(scope, receive, send)
                return
        body = _Body(
            scope,
            headers,
            receive,
            limits=self,
            has_body=(length or 0) > 0 or "chunked" in headers.get("transfer-encoding", "").lower(),
        )
        await self.app(scope, body.receive, send)

    async def _admit(self, scope: Scope, headers: Headers) -> Response | None:
        """None when the request carries a live key within its rate; else the answer refusing it."""
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        request = Request(scope)
        key = None
        if scheme.lower() == "bearer" and secret.strip():
            try:
                key = await apikeys.lookup(request, secret.strip())
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                return database_unavailable(request, exc)
        if key is None:
            problem = Problem(
                title="Unauthorized",
                status=401,
                detail="A valid API key is required: send `Authorization: Bearer <key>`.",
            )
            return problem_response(problem, request, {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.acquire(key.id)
        if wait > 0:
            problem = Problem(
                title="Too Many Requests",
                status=429,
                detail=(
                    f"This API key sent more than {self.limiter.rate:g} requests a second "
                    f"(bursts up to {self.limiter.burst:g}); retry after Retry-After seconds."
                ),
            )
            return problem_response(problem, request, {"Retry-After": str(max(1, math.ceil(wait)))})
        return None


class _Body:
    """The request body as the app reads it: checked against the route once routing chose it, and cut at the cap."""

    def __init__(self, scope: Scope, headers: Headers, receive: Receive, *, limits: EdgeLimits, has_body: bool) -> None:
        self._scope, self._headers, self._receive, self._limits = scope, headers, receive, limits
        self._has_body = has_body
        self._checked = False
        self._received = 0

    async def receive(self) -> Message:
        """The next message for the app; raises ProblemHTTPException for a body the route cannot take."""
        if not self._checked:
            self._checked = True
            # Routing has run by now: the app reads a body only inside the route it chose.
            accepted = accepted_media_types(self._scope.get("route")) if self._has_body else None
            if accepted is not None:
                media = media_type(self._headers)
                json_route = "application/json" in accepted
                if not (media in accepted or (json_route and is_json(media))):
                    raise ProblemHTTPException(_unsupported(media, accepted))
                if json_route:
                    return await self._whole_json()
        return await self._capped()

    async def _capped(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limits.max_bytes:
                raise ProblemHTTPException(_too_large(self._limits.max_bytes))
        return message

    async def _whole_json(self) -> Message:
        chunks: list[bytes] = []
        while True:
            message = await self._capped()
            if message["type"] != "http.request":
                return message  # the client left: the app sees it go
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        loads(body)
        return {"type": "http.request", "body": body, "more_body": False}


def _too_large(max_bytes: int) -> Problem:
    detail = f"The request body is larger than {max_bytes} bytes."
    return Problem(title=HTTPStatus(413).phrase, status=413, detail=detail)


def _unsupported(media: str, accepted: frozenset[str]) -> Problem:
    sent = f"Content-Type {media}" if media else "no Content-Type"
    detail = f"This endpoint takes {' or '.join(sorted(accepted))}; the request has {sent}."
    return Problem(title=HTTPStatus(415).phrase, status=415, detail=detail)
