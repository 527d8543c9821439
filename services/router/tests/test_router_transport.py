"""The delivery job's transport: requests spread over small pools by how busy each is, and counted until closed."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from leadrelay.testing import free_port, wait_until
from router.notifications.transport import CONNECTIONS_PER_POOL, SpreadTransport


class KeepAliveServer:
    """An HTTP/1.1 endpoint that keeps connections open; `/hold` answers only once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.connections = 0
        self.holding = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.split(b" ")[1] == b"/hold":
                    self.holding += 1
                    await self.release.wait()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    running = KeepAliveServer()
    yield running
    running.release.set()
    await running.stop()


async def test_requests_go_to_the_least_busy_pool_and_count_until_answered(server: KeepAliveServer) -> None:
    url = await server.start()
    transport = SpreadTransport(connections=2 * CONNECTIONS_PER_POOL)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        held = [asyncio.create_task(client.get(f"{url}/hold")) for _ in range(2 * CONNECTIONS_PER_POOL)]

        async def all_held() -> bool:
            return server.holding == len(held)

        await wait_until(all_held, timeout=10, what="every held request at the server")

        assert transport.pools == 2
        assert transport.in_flight() == [CONNECTIONS_PER_POOL, CONNECTIONS_PER_POOL]

        server.release.set()
        answers = await asyncio.gather(*held)

        assert [answer.status_code for answer in answers] == [204] * len(held)
        assert transport.in_flight() == [0, 0]


async def test_a_quiet_origin_keeps_reusing_one_connection(server: KeepAliveServer) -> None:
    url = await server.start()
    server.release.set()
    transport = SpreadTransport(connections=4 * CONNECTIONS_PER_POOL)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        for _ in range(5):
            assert (await client.post(f"{url}/hook", content=b"{}")).status_code == 204

    assert server.connections == 1


async def test_a_failed_request_is_no_longer_counted() -> None:
    transport = SpreadTransport(connections=CONNECTIONS_PER_POOL)
    async with httpx.AsyncClient(transport=transport, timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{free_port()}/nobody", content=b"{}")

    assert transport.in_flight() == [0]


def test_connections_are_split_into_pools_that_together_hold_them_all() -> None:
    assert SpreadTransport(connections=1).pools == 1
    assert SpreadTransport(connections=CONNECTIONS_PER_POOL).pools == 1
    assert SpreadTransport(connections=CONNECTIONS_PER_POOL + 1).pools == 2
    assert SpreadTransport(connections=32).pools == 32 // CONNECTIONS_PER_POOL
