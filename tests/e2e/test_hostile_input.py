"""Hostile input on a real stack: every answer is a 4xx problem, or a 202 whose lead is routed; memory stays bounded."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadrelay.broker import EmbeddedBroker
from leadrelay.problems import MALFORMED_JSON_PROBLEM, PROBLEM_JSON
from leadrelay.testing import DEV_API_KEY, Stack
from tests.e2e.conftest import StackFactory

AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}
MIB = 1024 * 1024
ACCEPTED_OR_REFUSED = {202, 422}  # normalisation decides; either way nothing is lost


def _lead(**fields: Any) -> bytes:
    return json.dumps({"email": "ada@analytical.example", "company": "Analytical Engines", **fields}).encode()


def _raw_lead(attributes: bytes) -> bytes:
    return b'{"email": "ada@analytical.example", "attributes": ' + attributes + b"}"


def _nested(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


# (id, headers, body, the statuses it may get)
CORPUS: list[tuple[str, dict[str, str], bytes, set[int]]] = [
    ("control", JSON, _lead(), {202}),
    ("nesting-16", JSON, _raw_lead(_nested(15)), {202}),
    ("nesting-17", JSON, _raw_lead(_nested(17)), {422}),
    ("nesting-200", JSON, _raw_lead(_nested(200)), {400}),
    ("nesting-260", JSON, _raw_lead(_nested(260)), {400}),
    ("nesting-990", JSON, _raw_lead(_nested(990)), {400}),
    ("nesting-100000", JSON, _raw_lead(b"[" * 100_000 + b"]" * 100_000), {400}),
    ("huge-first-name", JSON, _lead(first_name="A" * 100_000), {422}),
    ("huge-attribute", JSON, _lead(attributes={"note": "x" * 500_000}), {422}),
    ("many-attributes", JSON, _lead(attributes={f"k{i}": i for i in range(50_000)}), {422}),
    ("invalid-utf8", JSON, b'{"email": "ada@analytical.example", "company": "\xff\xfe\xc3"}', {400}),
    ("nul-byte", JSON, _lead(company="Analytical\x00Engines"), {422}),
    ("nul-in-attribute-key", JSON, _lead(attributes={"k\x00": 1}), {422}),
    ("lone-surrogate", JSON, b'{"email": "ada@analytical.example", "first_name": "\\udc00"}', {422}),
    ("lone-surrogate-attribute", JSON, _raw_lead(b'{"k": "\\ud800x"}'), {422}),
    ("look-alike-email", JSON, _lead(email="\u0430da@analytical.example"), ACCEPTED_OR_REFUSED),
    ("look-alike-domain", JSON, _lead(email="ada@\u0430nalytical.example"), ACCEPTED_OR_REFUSED),
    ("nan", JSON, _raw_lead(b'{"n": NaN}'), {400}),
    ("infinity", JSON, _raw_lead(b'{"n": Infinity}'), {400}),
    ("minus-infinity", JSON, _raw_lead(b'{"n": [-Infinity]}'), {400}),
    ("1e400", JSON, _raw_lead(b'{"n": 1e400}'), {400}),
    ("5000-digits", JSON, _raw_lead(b'{"n": ' + b"9" * 5000 + b"}"), {400}),
    ("integer-past-64-bits", JSON, _raw_lead(b'{"n": ' + b"9" * 30 + b"}"), {422}),
    ("country-eszett-a", JSON, _lead(country="\u00dfa"), {422}),
    ("country-eszett", JSON, _lead(country="\u00df"), ACCEPTED_OR_REFUSED),
    ("country-ligature", JSON, _lead(country="\ufb03"), ACCEPTED_OR_REFUSED),
    ("name-that-grows-upper-cased", JSON, _lead(first_name="\u00df" * 200), ACCEPTED_OR_REFUSED),
    ("email-that-grows-case-folded", JSON, _lead(email="\u00df" * 60 + "@analytical.example"), ACCEPTED_OR_REFUSED),
    ("empty-body", JSON, b"", {422}),
    ("not-an-object", JSON, b'"ada@analytical.example"', {422}),
    ("byte-order-mark", JSON, b"\xef\xbb\xbf" + _lead(), {400}),
    ("form-encoded", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, b"email=ada%40a.example", {415}),
    ("text-plain", {**AUTH, "Content-Type": "text/plain"}, _lead(), {415}),
    ("no-content-type", AUTH, _lead(), {415}),
    ("yaml", {**AUTH, "Content-Type": "application/yaml"}, b"email: ada@analytical.example\n", {415}),
    ("declared-oversize", JSON, _lead(attributes={"pad": "x" * (2 * MIB)}), {413}),
    ("no-key", {"Content-Type": "application/json"}, _lead(), {401}),
    ("no-key-oversize", {"Content-Type": "application/json"}, b" " * (2 * MIB), {413}),
]


async def _chunks(total: int, size: int = MIB) -> AsyncIterator[bytes]:
    chunk = b" " * size
    for _ in range(total // size):
        yield chunk


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _failures_logged(stack: Stack) -> list[str]:
    """Log lines of every service that say something went wrong inside it (not a client's mistake)."""
    alarms = ("unhandled error", "event dead-lettered", "background job crashed", "Exception in ASGI application")
    found = []
    for name, service in stack.services.items():
        for line in service.log_path.read_text(errors="replace").splitlines():
            if "Traceback" in line or any(alarm in line for alarm in alarms):
                found.append(f"{name}: {line[:300]}")
    return found


def _assert_problem(answer: httpx.Response, case: str) -> dict[str, Any]:
    assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == PROBLEM_JSON, case
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == answer.status_code, case
    assert problem["title"], case
    return problem


async def test_hostile_leads_get_a_4xx_problem_or_are_routed(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker)
    await stack.start()
    accepted: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack["intake"].url, timeout=30.0) as client:
        for case, headers, body, statuses in CORPUS:
            answer = await client.post("/v1/leads", content=body, headers=headers)
            assert answer.status_code in statuses, (case, answer.status_code, answer.text[:300])
            if answer.status_code == 202:
                accepted[case] = answer.json()["id"]
                continue
            problem = _assert_problem(answer, case)
            if answer.status_code == 400:
                assert problem["type"] == MALFORMED_JSON_PROBLEM, (case, problem)
            if answer.status_code == 422:
                assert problem["errors"], (case, problem)

        chunked = await client.post("/v1/leads", content=_chunks(4 * MIB), headers=JSON)
        _assert_problem(chunked, "chunked-oversize")
        assert chunked.status_code == 413

    assert {"control", "nesting-16"} <= set(accepted)
    # Every 202 is a lead that reaches a routing decision, readable on intake afterwards.
    for case, lead_id in accepted.items():
        lead = await stack.wait_routed(lead_id)
        assert lead["id"] == lead_id, case
    assert _failures_logged(stack) == []


async def test_a_big_body_without_a_key_is_refused_before_it_is_read(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start("intake")
    # A raw connection: the request's head and a first megabyte, then nothing more. The answer must
    # come anyway, since the service does not wait for (or read) the other 99 MB.
    reader, writer = await asyncio.open_connection("127.0.0.1", stack["intake"].port)
    try:
        writer.write(
            b"POST /v1/leads HTTP/1.1\r\nHost: intake\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{MIB:x}\r\n".encode() + b" " * MIB + b"\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"content-type: application/problem+json" in head.lower()
    assert b"www-authenticate: bearer" in head.lower()


@pytest.mark.parametrize("authorization", [AUTH, {}], ids=["with-key", "without-key"])
async def test_a_100_mb_body_leaves_memory_where_it_was(
    broker: EmbeddedBroker, make_stack: StackFactory, authorization: dict[str, str]
) -> None:
    stack = await make_stack(broker)
    await stack.start("intake")
    pid = stack["intake"].pid
    assert pid is not None
    headers = {**authorization, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack["intake"].url, timeout=60.0) as client:
        warm = await client.post("/v1/leads", content=b"{}", headers=headers)  # every code path loaded once
        assert warm.status_code in (401, 422)
        before = _rss_kib(pid)
        declared = await client.post(
            "/v1/leads", content=_chunks(100 * MIB), headers={**headers, "Content-Length": str(100 * MIB)}
        )
        chunked = await client.post("/v1/leads", content=_chunks(100 * MIB), headers=headers)
        after = _rss_kib(pid)
    assert declared.status_code == 413
    assert chunked.status_code == (413 if authorization else 401)
    assert after - before < 8 * 1024, f"intake grew by {(after - before) // 1024} MiB"
