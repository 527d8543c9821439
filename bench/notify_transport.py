"""Benchmark: the delivery job's CPU per POST: httpx's own transport, KeepAliveTransport, and its `post`.

Run: .venv/bin/python bench/notify_transport.py [--posts 4000] [--rounds 5]
Against a bare keep-alive HTTP endpoint in a child process (its CPU is not counted), it sends
`--posts` signed-size JSON POSTs in waves of `concurrency` at once, the way the delivery job's
rounds do, through one `httpx.AsyncClient` with (a) httpx's own transport, one pool of
`connections` (httpcore over anyio), and (b) `KeepAliveTransport` with as many; then (c) through
`KeepAliveTransport.post` without a client, as the delivery job sends. Each figure is this
process's CPU time per POST (`time.process_time`), the median of `--rounds` after a warm-up wave.
(Session 16's `SpreadTransport`, httpcore in pools of four, gave 0.23-0.34x of (a).)
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import httpx
import uvloop
from router_handlers import bare_endpoint

from router.notifications.transport import KeepAliveTransport

BODY = b'{"type":"lead.assigned","lead":{"company":"Acme"},"explanation":"' + b"x" * 1500 + b'"}'
SHAPES = [(32, 32), (32, 128), (64, 128)]
"""(connections, requests at once): the job's default, four rounds in flight, twice the connections."""


async def cpu_per_post(make_client: Callable[[], httpx.AsyncClient], url: str, *, posts: int, at_once: int) -> float:
    """Microseconds of this process's CPU per POST, sending `posts` in waves of `at_once`."""
    headers = {"content-type": "application/json"}
    async with make_client() as client:

        async def wave() -> None:
            answers = await asyncio.gather(*(client.post(url, content=BODY, headers=headers) for _ in range(at_once)))
            assert all(answer.status_code == 204 for answer in answers)

        await wave()  # connections open, caches warm
        started = time.process_time()
        for _ in range(posts // at_once):
            await wave()
        return 1e6 * (time.process_time() - started) / (posts // at_once * at_once)


async def cpu_per_direct_post(url: str, *, connections: int, posts: int, at_once: int) -> float:
    """Microseconds of this process's CPU per POST through `KeepAliveTransport.post`, the delivery job's way."""
    headers = {"content-type": "application/json"}
    async with KeepAliveTransport(connections=connections) as transport:

        async def wave() -> None:
            answers = await asyncio.gather(
                *(transport.post(url, body=BODY, headers=headers, timeout=5) for _ in range(at_once))
            )
            assert all(answer.status == 204 for answer in answers)

        await wave()
        started = time.process_time()
        for _ in range(posts // at_once):
            await wave()
        return 1e6 * (time.process_time() - started) / (posts // at_once * at_once)


async def measure(args: argparse.Namespace, url: str) -> list[str]:
    """One line per shape: the three medians, and the ratio of each of ours to httpx's transport."""
    lines = [
        "| connections, at once | httpx's transport | KeepAliveTransport | ratio | its `post` | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for connections, at_once in SHAPES:

        def one_pool(connections: int = connections) -> httpx.AsyncClient:
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            return httpx.AsyncClient(timeout=5, limits=limits)

        def keep_alive(connections: int = connections) -> httpx.AsyncClient:
            return httpx.AsyncClient(timeout=5, transport=KeepAliveTransport(connections=connections))

        figures: dict[str, list[float]] = {"one": [], "keep_alive": [], "post": []}
        for _ in range(args.rounds):  # alternated, so all see the same machine
            figures["one"].append(await cpu_per_post(one_pool, url, posts=args.posts, at_once=at_once))
            figures["keep_alive"].append(await cpu_per_post(keep_alive, url, posts=args.posts, at_once=at_once))
            figures["post"].append(
                await cpu_per_direct_post(url, connections=connections, posts=args.posts, at_once=at_once)
            )
        one, ours, direct = (statistics.median(figures[name]) for name in ("one", "keep_alive", "post"))
        lines.append(
            f"| {connections}, {at_once} | {one:,.0f} us | {ours:,.0f} us | {ours / one:.2f}x"
            f" | {direct:,.0f} us | {direct / one:.2f}x |"
        )
        print(lines[-1], flush=True)  # noqa: T201  (a benchmark prints its figures)
    return lines


async def run(args: argparse.Namespace) -> list[str]:
    """Start the endpoint, measure, stop it."""
    with bare_endpoint() as url:
        return await measure(args, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU per POST, median of {args.rounds} rounds of {args.posts} POSTs", flush=True)  # noqa: T201
    uvloop.run(run(args))  # the loop the services run on


if __name__ == "__main__":
    main()
