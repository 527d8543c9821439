"""Fixed-rate, open-loop load for POST /v1/leads.

Requests leave on schedule (lead i at start + i / rate) whether or not earlier ones were answered,
so a slow server shows up as latency instead of as a lower request rate (wrk and other closed-loop
tools wait for an answer before they send again, which hides queueing). Latency is measured from
the scheduled send time, so a load generator that falls behind does not hide it either; how far
behind it fell is reported (`dispatch_lag`).

The client is a small HTTP/1.1 keep-alive connection pool on asyncio streams: on two shared cores,
a full-featured client costs the benchmark process more CPU than the services it measures.
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)


class WallClock:
    """Wall-clock seconds (comparable with CloudEvent `time` fields) read from the monotonic loop clock."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._origin_wall = time.time()
        self._origin_loop = self._loop.time()

    def now(self) -> float:
        """Current wall-clock time in seconds since the epoch."""
        return self._origin_wall + (self._loop.time() - self._origin_loop)

    def loop_time(self, wall: float) -> float:
        """The loop-clock instant of a wall-clock time."""
        return wall - self._origin_wall + self._origin_loop


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host; at most `max_connections` requests in flight.

    A connection idle for longer than `max_idle` seconds is closed rather than reused (uvicorn
    closes idle keep-alive connections after 5 s); a reused connection the server closed before
    answering is replaced by a new one, once.
    """

    def __init__(self, host: str, port: int, *, max_connections: int = 256, max_idle: float = 4.0) -> None:
        self.host, self.port, self.max_idle = host, port, max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[asyncio.StreamWriter] = set()

    async def post_json(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST a JSON body; returns the status code and the response body."""
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        async with self._slots:
            reused = self._take_idle()
            if reused is not None:
                try:
                    return await self._exchange(*reused, request)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise  # the server had started answering: not a stale connection
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._open.add(writer)
            return await self._exchange(reader, writer, request)

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < self.max_idle and not writer.is_closing():
                return reader, writer
            self._discard(writer)
        return None

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(request)
            response_head = await reader.readuntil(b"\r\n\r\n")
            status = int(response_head[9:12])
            length = _CONTENT_LENGTH.search(response_head)
            if length is None:
                raise ValueError("response without Content-Length")
            response_body = await reader.readexactly(int(length.group(1)))
        except BaseException:
            self._discard(writer)
            raise
        if _CONNECTION_CLOSE.search(response_head):
            self._discard(writer)
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return status, response_body

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def close(self) -> None:
        """Close every connection."""
        writers, self._open, self._idle = list(self._open), set(), []
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class SentLead:
    """One lead of a run: when it was due, when it left, and intake's answer."""

    index: int
    scheduled: float  # wall-clock seconds: the open-loop send time latencies are measured from
    dispatched: float = 0.0
    answered: float | None = None
    status: int | None = None
    lead_id: str | None = None
    error: str | None = None


@dataclass
class LoadRun:
    """Every lead sent at one rate, and the counts of answers."""

    rate: float
    duration: float
    leads: list[SentLead] = field(default_factory=list)

    @property
    def accepted(self) -> list[SentLead]:
        """Leads intake answered 2xx with an id."""
        return [lead for lead in self.leads if lead.lead_id is not None]

    @property
    def non_2xx(self) -> int:
        """Answers outside 200-299."""
        return sum(1 for lead in self.leads if lead.status is not None and not 200 <= lead.status < 300)

    @property
    def server_errors(self) -> int:
        """5xx answers."""
        return sum(1 for lead in self.leads if lead.status is not None and lead.status >= 500)

    @property
    def failed(self) -> int:
        """Requests that got no answer (connection error, timeout)."""
        return sum(1 for lead in self.leads if lead.status is None)

    @property
    def dispatch_lag(self) -> list[float]:
        """How late each request left compared with its schedule (seconds)."""
        return [lead.dispatched - lead.scheduled for lead in self.leads]


async def open_loop(
    pool: HttpPool,
    *,
    rate: float,
    duration: float,
    body: Callable[[int], dict[str, str]],
    api_key: str,
    clock: WallClock,
    timeout: float = 30.0,
) -> LoadRun:
    """Send round(rate * duration) leads at `rate` per second on schedule; wait for every answer."""
    run = LoadRun(rate=rate, duration=duration)
    headers = {"Authorization": f"Bearer {api_key}"}
    loop = asyncio.get_running_loop()

    async def send(lead: SentLead) -> None:
        lead.dispatched = clock.now()
        try:
            async with asyncio.timeout(timeout):
                status, answer = await pool.post_json("/v1/leads", json.dumps(body(lead.index)).encode(), headers)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            lead.error = repr(exc)
            return
        lead.answered, lead.status = clock.now(), status
        if 200 <= status < 300:
            lead.lead_id = json.loads(answer)["id"]

    start = clock.now() + 0.05
    tasks = []
    for index in range(round(rate * duration)):
        lead = SentLead(index=index, scheduled=start + index / rate)
        run.leads.append(lead)
        delay = clock.loop_time(lead.scheduled) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing by schedule: this is what open loop means
        tasks.append(asyncio.create_task(send(lead)))
    await asyncio.gather(*tasks)
    return run
