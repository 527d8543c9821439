"""Closed-loop load from pre-built requests: POST /v1/leads and signed webhooks through one generator.

A webhook signature covers a timestamp and, against replays, every delivery needs its own id or
body; wrk's Lua cannot compute an HMAC cheaply. So each run's requests are built and signed here,
just before the run (timestamps well inside intake's 5-minute window), written to one file per wrk
thread, and a wrk script sends them in order. The REST path goes through the same script with its
own pre-built requests, so the generator costs both paths the same and their ratio is the server's.

A run that needs more requests than were built would wrap around and send replays (answered 200,
no new lead): the script reports it, and the run is refused instead of counted.
"""

import asyncio
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from leadrelay import signing
from leadrelay.demo import DEMO_SOURCES
from leadrelay.testing import DEV_API_KEY

# path name -> the route it posts to; webhook paths post to a demo source, which intake seeds
# outside production with a public secret (leadrelay.demo).
PATHS = {
    "rest": "/v1/leads",
    "standard": "/v1/webhooks/demo-standard",
    "hubspot": "/v1/webhooks/demo-hubspot",
}

WRK_SCRIPT = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local requests, count, index = {}, 0, 0
wrapped = 0  -- a global: done() reads it with thread:get
function init(args)
  local file = assert(io.open(args[1] .. "-" .. tid, "rb"))
  while true do
    local size = file:read("*l")
    if not size then break end
    count = count + 1
    requests[count] = file:read(tonumber(size))
  end
  file:close()
end
function request()
  index = index + 1
  if index > count then
    index, wrapped = 1, 1
  end
  return requests[index]
end
function done(summary, latency, requests)
  local exhausted = 0
  for _, thread in ipairs(threads) do
    exhausted = exhausted + thread:get("wrapped")
  end
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99), exhausted))
end
"""


def _person(token: str, index: int) -> dict[str, str]:
    # A new person on every request: intake keeps one lead per person.
    return {
        "email": f"bench-{token}-{index}@example.com",
        "first_name": "Ada",
        "company": f"Bench Company {index % 97}",
        "job_title": "CTO",
    }


def _compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _http(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def rest_request(host: str, person: dict[str, str]) -> bytes:
    """POST /v1/leads with the development key."""
    body = _compact({**person, "source": "bench"})
    return _http(host, PATHS["rest"], {"Authorization": f"Bearer {DEV_API_KEY}"}, body)


def standard_request(host: str, person: dict[str, str]) -> bytes:
    """A Standard Webhooks delivery to demo-standard: its own webhook-id, signed with the whsec_ secret."""
    _kind, secret = DEMO_SOURCES["demo-standard"]
    msg_id, stamp = f"msg_{uuid4().hex}", int(time.time())
    body = _compact({"type": "contact.created", "timestamp": stamp, "data": person})
    signature = signing.standard(secret, msg_id=msg_id, timestamp=stamp, body=body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}
    return _http(host, PATHS["standard"], headers, body)


def hubspot_request(host: str, person: dict[str, str]) -> bytes:
    """A HubSpot workflow delivery to demo-hubspot, signed v3 (the URI intake sees: http://<host><path>)."""
    _kind, secret = DEMO_SOURCES["demo-hubspot"]
    properties = {
        "email": person["email"],
        "firstname": person["first_name"],
        "company": person["company"],
        "jobtitle": person["job_title"],
    }
    body = _compact({"properties": {name: {"value": value} for name, value in properties.items()}})
    stamp = str(int(time.time() * 1000))
    uri = f"http://{host}{PATHS['hubspot']}"
    signature = signing.hubspot_v3(secret, method="POST", uri=uri, body=body, timestamp=stamp)
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}
    return _http(host, PATHS["hubspot"], headers, body)


BUILDERS: dict[str, Callable[[str, dict[str, str]], bytes]] = {
    "rest": rest_request,
    "standard": standard_request,
    "hubspot": hubspot_request,
}


def _parent_and_cpu(pid: int | str) -> tuple[int, float]:
    """A process's parent and CPU seconds (user + system) so far, from /proc; OSError once it has ended."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by one process (Linux /proc)."""
    return _parent_and_cpu(pid)[1]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)], times[int(entry.name)] = _parent_and_cpu(entry.name)
        except OSError:  # the process ended meanwhile
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, its_parent in parents.items() if its_parent == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(member, 0.0) for member in tree)


def write_requests(path_name: str, host: str, *, count: int, threads: int, prefix: Path) -> None:
    """`count` unique, freshly signed requests, split over one file per wrk thread (<prefix>-<n>)."""
    token, build = uuid4().hex[:10], BUILDERS[path_name]
    per_thread = -(-count // threads)
    for thread in range(threads):
        with prefix.with_name(f"{prefix.name}-{thread}").open("wb") as file:
            for index in range(thread * per_thread, (thread + 1) * per_thread):
                request = build(host, _person(token, index))
                file.write(b"%d\n" % len(request) + request)


async def run(
    url: str,
    path_name: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    max_rate: int,
    workdir: Path,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run of `path_name` against intake at `url`: accepted (2xx) per second and wrk's latency.

    With `server_pid`, also the server's CPU time per accepted lead: on a shared machine it moves far
    less than a rate does, since it does not count the time the server waited for a core.
    """
    host = url.removeprefix("http://")
    script = workdir / "signed_load.lua"
    script.write_text(WRK_SCRIPT)
    prefix = workdir / f"requests-{path_name}"
    write_requests(path_name, host, count=max_rate * (seconds + 1), threads=threads, prefix=prefix)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    command += [f"{url}{PATHS[path_name]}", str(prefix)]
    cpu_before = process_tree_cpu(server_pid) if server_pid else 0.0
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for thread in range(threads):
            prefix.with_name(f"{prefix.name}-{thread}").unlink(missing_ok=True)
    line = next((line for line in output.decode().splitlines() if line.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output.decode()}")
    requests, non_2xx, socket_errors, duration_us, p50_us, p99_us, wrapped = (int(part) for part in line.split()[1:])
    if wrapped:
        raise RuntimeError(f"{path_name}: wrk sent more than the {max_rate}/s built for it; raise --max-rate")
    cpu = process_tree_cpu(server_pid) - cpu_before if server_pid else None
    accepted = requests - non_2xx
    return {
        "requests": requests,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "accepted_per_s": round(accepted / (duration_us / 1e6), 1),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "server_cpu_ms_per_lead": round(cpu * 1000 / accepted, 2) if cpu is not None and accepted else None,
    }


async def compare(
    url: str,
    path_names: list[str],
    *,
    runs: int,
    seconds: int,
    connections: int,
    threads: int,
    max_rate: int,
    workdir: Path,
    server_pid: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Every path `runs` times, alternating (so the machine's swings reach each path alike); the median run of each.

    Besides the ratio of the medians, `paired_ratio` is the median of each round's ratio to the
    first path's run of that round (the rounds take the machine's slow spells together), and
    `cpu_ratio` the same for the server's CPU time per lead.
    """
    unknown = set(path_names) - PATHS.keys()
    if unknown:
        raise ValueError(f"unknown paths {sorted(unknown)}: choose from {sorted(PATHS)}")
    settings = {
        "seconds": seconds,
        "connections": connections,
        "threads": threads,
        "max_rate": max_rate,
        "workdir": workdir,
        "server_pid": server_pid,
    }
    for path_name in path_names:  # warm-up: connections, caches, the source lookup's first query
        await run(url, path_name, **{**settings, "seconds": 1})
    measured: dict[str, list[dict[str, Any]]] = {path_name: [] for path_name in path_names}
    for _ in range(runs):
        for path_name in path_names:
            measured[path_name].append(await run(url, path_name, **settings))
    base_runs = measured[path_names[0]]
    results = {}
    for path_name, path_runs in measured.items():
        rates = [path_run["accepted_per_s"] for path_run in path_runs]
        middle = sorted(path_runs, key=lambda path_run: path_run["accepted_per_s"])[len(path_runs) // 2]
        paired = [
            mine["accepted_per_s"] / base["accepted_per_s"]
            for mine, base in zip(path_runs, base_runs, strict=True)
            if base["accepted_per_s"]  # a stalled round (nothing accepted) has no ratio
        ]
        cpu = [path_run["server_cpu_ms_per_lead"] for path_run in path_runs]
        base_cpu = [base["server_cpu_ms_per_lead"] for base in base_runs]
        cpu_ratios = [mine / base for mine, base in zip(cpu, base_cpu, strict=True) if mine and base]
        results[path_name] = {
            **middle,
            "median_per_s": statistics.median(rates),
            "runs": rates,
            "non_2xx_all_runs": sum(path_run["non_2xx"] for path_run in path_runs),
            "paired_ratio": round(statistics.median(paired), 3) if paired else None,
            "cpu_ms_per_lead": statistics.median(known) if (known := [c for c in cpu if c is not None]) else None,
            "cpu_ratio": round(statistics.median(cpu_ratios), 3) if cpu_ratios else None,
        }
    return results
