"""The delivery job's transport against real sockets: connections kept alive, reused, capped and dropped when the
server closes them; every framing of a response; timeouts, refusals and broken answers as httpx's own errors; TLS."""

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import trustme

from leadrelay.testing import free_port, wait_until
from router.notifications import transport as transport_module
from router.notifications.transport import KeepAliveTransport

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
Respond = Callable[[bytes, bytes], Awaitable[bytes]]


async def no_content(_head: bytes, _body: bytes) -> bytes:
    return NO_CONTENT


class RawServer:
    """An HTTP/1.1 endpoint writing whatever `respond` returns for each request, on kept-alive connections."""

    def __init__(self, respond: Respond = no_content, *, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.closed = 0
        self.close_after_answer = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _read_body(reader, head)
                self.requests.append((head, body))
                writer.write(await self.respond(head, body))
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lines = head.lower().split(b"\r\n")
    if b"transfer-encoding: chunked" in lines:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
        return body
    lengths = [int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")]
    return await reader.readexactly(lengths[0]) if lengths else b""


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def make(respond: Respond = no_content, **options: ssl.SSLContext) -> RawServer:
        started.append(RawServer(respond, **options))
        return started[-1]

    yield make
    for server in started:
        await server.stop()


def client_of(transport: KeepAliveTransport, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, **timeouts))


async def test_a_quiet_origin_keeps_reusing_one_connection(servers: Callable[..., RawServer]) -> None:
    server = servers()
    url = await server.start()
    transport = KeepAliveTransport(connections=8)
    async with client_of(transport) as client:
        for _ in range(5):
            assert (await client.post(url, content=b"{}")).status_code == 204

        assert server.connections == 1
        assert transport.idle_connections() == 1


async def test_requests_at_once_open_connections_up_to_the_limit_and_then_wait(
    servers: Callable[..., RawServer],
) -> None:
    release, holding = asyncio.Event(), []

    async def held(head: bytes, body: bytes) -> bytes:
        holding.append(head)
        await release.wait()
        return NO_CONTENT

    server = servers(held)
    url = await server.start()
    transport = KeepAliveTransport(connections=4)
    async with client_of(transport) as client:
        sent = [asyncio.create_task(client.post(url, content=b"{}")) for _ in range(6)]

        async def four_held() -> bool:
            return len(holding) == 4

        await wait_until(four_held, timeout=10, what="four requests at the server")
        assert server.connections == 4
        assert not any(task.done() for task in sent)

        release.set()
        answers = await asyncio.gather(*sent)

    assert [answer.status_code for answer in answers] == [204] * 6
    assert server.connections == 4  # the last two went on connections the first four freed


async def test_a_request_waits_for_a_free_connection_only_up_to_the_pool_timeout(
    servers: Callable[..., RawServer],
) -> None:
    release = asyncio.Event()

    async def held(head: bytes, body: bytes) -> bytes:
        await release.wait()
        return NO_CONTENT

    server = servers(held)
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=1), pool=0.2) as client:
        first = asyncio.create_task(client.post(url, content=b"{}"))
        await wait_until(lambda: _true_when(server.requests), timeout=10, what="the first request at the server")
        with pytest.raises(httpx.PoolTimeout):
            await client.post(url, content=b"{}")
        release.set()
        assert (await first).status_code == 204


async def _true_when(value: object) -> bool:
    return bool(value)


async def test_a_connection_the_server_closed_is_dropped_without_an_error(servers: Callable[..., RawServer]) -> None:
    server = servers()
    server.close_after_answer = True  # and says nothing about it: no "Connection: close"
    url = await server.start()
    transport = KeepAliveTransport(connections=4)
    async with client_of(transport) as client:
        assert (await client.post(url, content=b"{}")).status_code == 204

        async def dropped() -> bool:
            return transport.idle_connections() == 0

        await wait_until(dropped, timeout=10, what="the transport to see the close")
        assert (await client.post(url, content=b"{}")).status_code == 204

    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", False),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
        (b"HTTP/1.0 200 OK\r\n\r\nhello", False),  # delimited by the close
    ],
    ids=["content-length", "chunked", "connection-close", "informational-first", "until-close"],
)
async def test_every_framing_of_a_response_is_read_whole(
    servers: Callable[..., RawServer], answer: bytes, reused: bool
) -> None:
    async def framed(head: bytes, body: bytes) -> bytes:
        return answer

    server = servers(framed)
    server.close_after_answer = not reused
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        for _ in range(2):
            response = await client.post(url, content=b"{}")
            assert (response.status_code, response.text, response.reason_phrase) == (200, "hello", "OK")

    assert server.connections == (1 if reused else 2)


async def test_a_compressed_body_is_decoded(servers: Callable[..., RawServer]) -> None:
    packed = gzip.compress(b'{"ok":true}')

    async def compressed(head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed)

    url = await servers(compressed).start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        assert (await client.post(url, content=b"{}")).json() == {"ok": True}


async def test_the_request_goes_out_as_the_client_built_it(servers: Callable[..., RawServer]) -> None:
    server = servers()
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        await client.post(f"{url}/hooks/rep-1?channel=0", content=b'{"a":1}', headers={"webhook-id": "msg_1"})

        async def streamed() -> AsyncIterator[bytes]:
            yield b'{"b":'
            yield b"2}"

        await client.post(f"{url}/stream", content=streamed())

    (head, body), (streamed_head, streamed_body) = server.requests
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"post /hooks/rep-1?channel=0 http/1.1"
    assert {b"host: " + url.removeprefix("http://").encode(), b"content-length: 7", b"webhook-id: msg_1"} <= set(lines)
    assert body == b'{"a":1}'
    assert b"transfer-encoding: chunked" in streamed_head.lower().split(b"\r\n")
    assert streamed_body == b'{"b":2}'


async def test_a_header_with_a_line_break_is_never_sent(servers: Callable[..., RawServer]) -> None:
    server = servers()
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.post(url, content=b"{}", headers={"x-note": "a\r\nx-injected: 1"})

    assert server.requests == []


async def test_a_silent_server_times_out_and_its_connection_is_not_reused(servers: Callable[..., RawServer]) -> None:
    silent = asyncio.Event()

    async def maybe_silent(head: bytes, body: bytes) -> bytes:
        if b"/silent" in head:
            await silent.wait()
        return NO_CONTENT

    server = servers(maybe_silent)
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4), read=0.3) as client:
        assert (await client.post(url, content=b"{}")).status_code == 204
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{url}/silent", content=b"{}")
        assert (await client.post(url, content=b"{}")).status_code == 204
        silent.set()

    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"NOT HTTP AT ALL\r\n\r\n"],
    ids=["cut-short", "malformed"],
)
async def test_a_broken_response_is_a_protocol_error(servers: Callable[..., RawServer], answer: bytes) -> None:
    async def broken(head: bytes, body: bytes) -> bytes:
        return answer

    server = servers(broken)
    server.close_after_answer = True
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"{}")


async def test_a_long_body_is_cut_and_its_connection_closed(
    servers: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport_module, "MAX_RESPONSE_BYTES", 10)

    async def long(head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100

    server = servers(long)
    url = await server.start()
    async with client_of(KeepAliveTransport(connections=4)) as client:
        for _ in range(2):
            response = await client.post(url, content=b"{}")
            assert (response.status_code, response.content) == (200, b"x" * 10)

    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with client_of(KeepAliveTransport(connections=4)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")


async def test_idle_connections_are_capped_and_the_oldest_closed(servers: Callable[..., RawServer]) -> None:
    first, second, third = servers(), servers(), servers()
    urls = [await server.start() for server in (first, second, third)]
    transport = KeepAliveTransport(connections=2)
    async with client_of(transport) as client:
        for url in urls:
            assert (await client.post(url, content=b"{}")).status_code == 204

        async def oldest_closed() -> bool:
            return first.closed == 1

        await wait_until(oldest_closed, timeout=10, what="the oldest idle connection closed")
        assert transport.idle_connections() == 2
        assert (second.closed, third.closed) == (0, 0)


async def test_https_is_verified_and_kept_alive(servers: Callable[..., RawServer]) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_tls)
    server = servers(tls=server_tls)
    url = await server.start(host="localhost")

    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    async with client_of(KeepAliveTransport(connections=4, ssl_context=trusting)) as client:
        for _ in range(2):
            assert (await client.post(url, content=b"{}")).status_code == 204
    assert server.connections == 1

    async with client_of(KeepAliveTransport(connections=4)) as client:  # the system's trust: not this CA
        with pytest.raises(httpx.ConnectError):
            await client.post(url, content=b"{}")


# The delivery job's own path: `post`, without httpx's client.


async def test_post_sends_the_request_as_given_and_reuses_the_connection(servers: Callable[..., RawServer]) -> None:
    async def busy(_head: bytes, _body: bytes) -> bytes:
        return b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"

    server = servers(busy)
    url = await server.start()
    transport = KeepAliveTransport(connections=4)
    headers = {"content-type": "application/json", "webhook-id": "msg_1"}
    async with transport:
        for _ in range(2):
            answer = await transport.post(f"{url}/hooks/rep-1?channel=0", body=b'{"a":1}', headers=headers, timeout=5)
            assert (answer.status, answer.header(b"retry-after"), answer.header(b"x-absent")) == (429, "7", None)

    assert server.connections == 1
    head, body = server.requests[0]
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"post /hooks/rep-1?channel=0 http/1.1"
    host = url.removeprefix("http://").encode()
    expected = {b"host: " + host, b"user-agent: leadrelay-router", b"content-type: application/json"}
    assert expected | {b"webhook-id: msg_1", b"content-length: 7"} <= set(lines)
    assert body == b'{"a":1}'


async def test_post_never_sends_a_header_with_a_line_break(servers: Callable[..., RawServer]) -> None:
    server = servers()
    url = await server.start()
    async with KeepAliveTransport(connections=4) as transport:
        with pytest.raises(httpx.LocalProtocolError):
            await transport.post(url, body=b"{}", headers={"x-note": "a\r\nx-injected: 1"}, timeout=5)

    assert server.requests == []


async def test_post_fails_as_httpx_does(servers: Callable[..., RawServer]) -> None:
    silent = asyncio.Event()

    async def never(_head: bytes, _body: bytes) -> bytes:
        await silent.wait()
        return NO_CONTENT

    url = await servers(never).start()
    async with KeepAliveTransport(connections=4) as transport:
        with pytest.raises(httpx.ReadTimeout):
            await transport.post(url, body=b"{}", headers={}, timeout=0.3)
        with pytest.raises(httpx.ConnectError):
            await transport.post(f"http://127.0.0.1:{free_port()}/", body=b"{}", headers={}, timeout=5)
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.post("ftp://127.0.0.1/", body=b"{}", headers={}, timeout=5)
        assert transport.idle_connections() == 0  # the timed-out connection is not kept
