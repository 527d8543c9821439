"""The delivery job's HTTP transport: its connections split into small pools, each request to the least busy.

httpcore checks every connection of a pool on each request and each response (and, for every idle
one, walks the pool again), so a request's CPU cost grows with the pool: one POST through a pool of
32 kept-alive connections cost about three times one through pools of 4 (bench/notify_transport.py).
"""

import math
import zlib
from collections.abc import AsyncIterator, Callable

import httpx

CONNECTIONS_PER_POOL = 4
"""Small enough that httpcore's walks over a pool stay cheap; the pools together hold the connections asked for."""


class SpreadTransport(httpx.AsyncBaseTransport):
    """Up to `connections` connections in pools of CONNECTIONS_PER_POOL; each request to the least busy pool.

    Among pools equally busy, a request prefers the one its origin hashes to, so an origin's
    requests at a quiet time keep reusing that pool's kept-alive connections.
    """

    def __init__(self, *, connections: int) -> None:
        count = max(1, math.ceil(connections / CONNECTIONS_PER_POOL))
        size = math.ceil(connections / count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        tls = httpx.create_ssl_context()  # one for all pools: each costs tens of milliseconds to build
        self._pools = [httpx.AsyncHTTPTransport(verify=tls, limits=limits) for _ in range(count)]
        self._in_flight = [0] * count

    @property
    def pools(self) -> int:
        """How many pools the connections are split into."""
        return len(self._pools)

    def in_flight(self) -> list[int]:
        """Requests each pool is serving now (a response counts until it is closed)."""
        return list(self._in_flight)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the least busy pool; its count drops when the response is closed or the request fails."""
        index = self._least_busy(request.url)
        self._in_flight[index] += 1
        finished = _Once(lambda: self._finish(index))
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            finished()
            raise
        response.stream = _CountedStream(response.stream, finished)
        return response

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pool in self._pools:
            await pool.aclose()

    def _least_busy(self, url: httpx.URL) -> int:
        count = len(self._pools)
        preferred = zlib.crc32(f"{url.scheme}://{url.netloc.decode()}".encode()) % count
        order = [(preferred + offset) % count for offset in range(count)]
        return min(order, key=self._in_flight.__getitem__)

    def _finish(self, index: int) -> None:
        self._in_flight[index] -= 1


class _Once:
    """Calls `action` the first time it is called, never again."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


class _CountedStream(httpx.AsyncByteStream):
    """A response body that reports when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream | httpx.SyncByteStream, closed: _Once) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's responses are async
        self._stream = stream
        self._closed = closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._closed()
