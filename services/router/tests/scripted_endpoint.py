"""A local HTTP/1.1 endpoint for router's notification tests: it answers as scripted and keeps every request."""

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    """How the server answers one request: a status and headers, after `hang` seconds."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0


@dataclass
class Received:
    """A request the server got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class FlakyServer:
    """A local HTTP/1.1 endpoint answering each path as scripted, then 200 for ever."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(path, headers, body, time.monotonic()))
            answers = self.script.get(path, [])
            answer = answers.pop(0) if answers else Answer()
            if answer.hang:
                await asyncio.sleep(answer.hang)  # the behaviour under test: slower than the client's timeout
            extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers.items())
            writer.write(
                f"HTTP/1.1 {answer.status} X\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
