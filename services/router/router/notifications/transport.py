"""The delivery job's HTTP transport: HTTP/1.1 over kept-alive connections, made for many small POSTs.

httpx's default transport (httpcore over anyio) cost about 0.8 ms of CPU per POST here, most of it
in locks, cancel scopes and checks of the pooled connections on every request and response; the
delivery job sends one POST per channel of every assignment. This transport keeps each origin's
idle connections in a list, learns from the event loop that a server closed one (no check per
request), and parses responses with httptools, the C parser uvicorn reads requests with
(bench/notify_transport.py measures both). It serves an httpx.AsyncClient like any transport,
and the delivery job calls its `post` directly: httpx's client and models cost more per request
than the transport itself (cookies extracted from every answer, headers merged, encoded and
checked again). Requests go straight to the endpoint, never through a proxy from the environment
(as they did through SpreadTransport).
"""

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

import httptools
import httpx

KEEPALIVE_EXPIRY_SECONDS = 5.0
"""An idle connection is not reused after this long (httpx's default; servers often close theirs sooner)."""
MAX_RESPONSE_BYTES = 1 << 20
"""A longer response body is cut here and its connection closed: the delivery job reads only the status."""

Origin = tuple[bytes, str, int]
"""Scheme, host and port."""
USER_AGENT = b"LeadRelay-router"
"""Sent with every POST of the delivery job (`KeepAliveTransport.post`)."""


@dataclass
class Answer:
    """A response as read off the connection."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool

    def header(self, name: bytes) -> str | None:
        """The first value of a header (`name` in lower case), as text."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None


@dataclass
class _Reading:
    """The response being read: what the parser has delivered so far."""

    waiter: asyncio.Future[Answer]
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    headers_done: bool = False


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time; told by the event loop when the server closes it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reading: _Reading | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write requests to."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        """Feed the parser; bytes nobody asked for mean the connection cannot be trusted."""
        if self._reading is None:
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """A response delimited by the close ends here; any other unfinished one fails."""
        self.lost = True
        reading = self._reading
        if reading is None:
            return
        delimited_by_close = reading.headers_done and not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in reading.headers
        )
        if delimited_by_close:
            self._answer(keep_alive=False)
        else:
            self._fail(httpx.RemoteProtocolError("the server closed the connection before the response ended"))

    # httptools callbacks

    # Each ignores what comes after the response was answered (a cut body, or a server sending more).

    def on_status(self, reason: bytes) -> None:
        """The reason phrase (it may come in pieces)."""
        if self._reading is not None:
            self._reading.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header of the response."""
        if self._reading is not None:
            self._reading.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """The body follows, if any."""
        if self._reading is not None:
            self._reading.headers_done = True

    def on_body(self, body: bytes) -> None:
        """Keep the body up to MAX_RESPONSE_BYTES; past it, answer with what came and drop the connection."""
        reading = self._reading
        if reading is None:
            return
        reading.body += body[: MAX_RESPONSE_BYTES - len(reading.body)]
        if len(reading.body) >= MAX_RESPONSE_BYTES:
            self._answer(keep_alive=False)
            self.close()

    def on_message_complete(self) -> None:
        """The response is whole (an informational 1xx is skipped: the final one follows)."""
        reading = self._reading
        if reading is None:
            return
        if self._parser.get_status_code() < 200:
            reading.reason, reading.headers, reading.headers_done = b"", [], False
            return
        self._answer(keep_alive=self._parser.should_keep_alive())

    # used by the transport

    async def exchange(self, request: bytes, *, read_timeout: float | None) -> Answer:
        """Send `request` and read its response; the connection is closed if that does not end well."""
        assert self.transport is not None
        reading = self._reading = _Reading(asyncio.get_running_loop().create_future())
        try:
            self.transport.write(request)
            async with asyncio.timeout(read_timeout):
                return await reading.waiter
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("no whole response within the read timeout") from None
        except BaseException:
            self.close()
            raise
        finally:
            self._reading = None

    def close(self) -> None:
        """Close the connection; it is never used again."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _answer(self, *, keep_alive: bool) -> None:
        reading, self._reading = self._reading, None
        if reading is None or reading.waiter.done():
            return
        status = self._parser.get_status_code()
        reading.waiter.set_result(Answer(status, reading.reason, reading.headers, bytes(reading.body), keep_alive))

    def _fail(self, exc: Exception) -> None:
        reading, self._reading = self._reading, None
        if reading is not None and not reading.waiter.done():
            reading.waiter.set_exception(exc)
        self.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """Up to `connections` requests at once; each origin's idle connections reused, the most recent first.

    At most `connections` idle connections are kept in all (the oldest is closed first), and one idle
    longer than KEEPALIVE_EXPIRY_SECONDS is not reused. A request waits for a free slot up to the
    pool timeout. Not for HEAD: the length of its response's body would be waited for.
    """

    def __init__(self, *, connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._slots = asyncio.Semaphore(connections)
        self._max_idle = connections
        self._idle: dict[Origin, list[Connection]] = {}
        self._ssl_context = ssl_context

    def idle_connections(self) -> int:
        """Connections kept open for reuse now (one the server closed no longer counts)."""
        return sum(not connection.lost for connections in self._idle.values() for connection in connections)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send on an idle connection to the origin, or a new one; answer once the whole response is read."""
        timeouts = request.extensions.get("timeout", {})
        origin = _origin_of(request.url)
        payload = _serialise(request, await request.aread())
        answer = await self._exchange(
            origin, payload, pool=timeouts.get("pool"), connect=timeouts.get("connect"), read=timeouts.get("read")
        )
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str], timeout: float | None) -> Answer:
        """POST `body` with `headers` (Host, Content-Length and User-Agent added), with `timeout` for each wait.

        The same exchange as through an httpx.AsyncClient without its models; errors are httpx's own.
        """
        target = _target_of(url)
        lines = [b"POST " + target.path + b" HTTP/1.1", b"host: " + target.host, b"user-agent: " + USER_AGENT]
        for name, value in headers.items():
            lines.append(_header_line(name.encode("ascii"), value.encode("utf-8")))
        lines.append(b"content-length: %d" % len(body))
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
        return await self._exchange(target.origin, payload, pool=timeout, connect=timeout, read=timeout)

    async def _exchange(
        self, origin: Origin, payload: bytes, *, pool: float | None, connect: float | None, read: float | None
    ) -> Answer:
        try:
            async with asyncio.timeout(pool):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection within the pool timeout") from None
        try:
            connection = self._reuse(origin) or await self._connect(origin, connect)
            answer = await connection.exchange(payload, read_timeout=read)
        finally:
            self._slots.release()
        if answer.keep_alive and not connection.lost:
            self._keep(origin, connection)
        else:
            connection.close()
        return answer

    async def aclose(self) -> None:
        """Close every idle connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _reuse(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if idle is None:
            return None
        now = time.monotonic()
        found = None
        while idle and found is None:
            connection = idle.pop()
            if not connection.lost and now - connection.idle_since < KEEPALIVE_EXPIRY_SECONDS:
                found = connection
            else:
                connection.close()
        if not idle:
            del self._idle[origin]
        return found

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == b"https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await asyncio.get_running_loop().create_connection(
                    Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("no connection within the connect timeout") from None
        except OSError as exc:  # refused, unreachable, name unknown, TLS refused
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return connection

    def _keep(self, origin: Origin, connection: Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        if sum(map(len, self._idle.values())) > self._max_idle:
            oldest = min(self._idle, key=lambda key: self._idle[key][0].idle_since)
            self._idle[oldest].pop(0).close()
            if not self._idle[oldest]:
                del self._idle[oldest]

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()  # built once: each costs tens of milliseconds
        return self._ssl_context


def _origin_of(url: httpx.URL) -> Origin:
    scheme = url.raw_scheme
    if scheme not in (b"http", b"https"):
        raise httpx.UnsupportedProtocol(f"only http and https URLs are sent, not {url.scheme!r}")
    return scheme, url.host, url.port or (443 if scheme == b"https" else 80)


@dataclass(frozen=True)
class _Target:
    """Where a URL's requests go: the origin to connect to, the Host header and the request target."""

    origin: Origin
    host: bytes
    path: bytes


@lru_cache(maxsize=4096)
def _target_of(url: str) -> _Target:
    """Parsed once per URL (reps' endpoints repeat); httpx.URL validates and normalises it."""
    parsed = httpx.URL(url)
    host = parsed.netloc
    _header_line(b"host", host)
    return _Target(_origin_of(parsed), host, parsed.raw_path)


def _header_line(name: bytes, value: bytes) -> bytes:
    if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
        raise httpx.LocalProtocolError("a header holds a line break")
    return name + b": " + value


def _serialise(request: httpx.Request, body: bytes) -> bytes:
    """The request line, the headers as the client set them (Host and Content-Length included), the body."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    lines.extend(_header_line(name, value) for name, value in request.headers.raw)
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
