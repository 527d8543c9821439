"""Benchmark: lead-to-account matching against books of 1,000 and 100,000 accounts.

Run: .venv/bin/python bench/account_matching.py [--sizes 1000,100000] [--batch 200] [--rounds 15]
         [--postgres URL]
For each book size it migrates a scratch SQLite database (and, with --postgres, a scratch
PostgreSQL database created there and dropped afterwards) and bulk inserts a synthetic book (made-up
company names with legal forms, one to three domains each). It then times
`scoring.accounts.service.match_many` on batches of one kind of lead each: email domain hits,
subdomain hits, exact names, near-miss names and leads that match nothing, plus a mixed batch. Every
lead aims at the first 1,000 accounts, which open every book, so each size answers the same leads;
every batch is timed against each book in turn. It prints the median cost per lead for each book
size and the ratio between them.
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from sqlalchemy import insert, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.db import create_engine, create_session_factory, run_migrations
from leadrelay.events import LeadReceived
from scoring.accounts import normalise
from scoring.accounts.models import AccountDomain, AccountNameKey, BookAccount
from scoring.accounts.service import match_many
from scoring.main import MIGRATIONS_DIR

SYLLABLES = (
    "zen",
    "tri",
    "qua",
    "lo",
    "mar",
    "vex",
    "ora",
    "nix",
    "bel",
    "cor",
    "dra",
    "fin",
    "gal",
    "hal",
    "ion",
    "jun",
    "kel",
    "lum",
    "mo",
    "nor",
    "pel",
    "quin",
    "ros",
    "sol",
    "tor",
    "ul",
    "ver",
    "wyn",
    "xa",
    "yor",
    "ab",
    "ek",
    "sti",
    "pra",
    "dev",
)
SECOND_WORDS = (
    "systems",
    "labs",
    "foods",
    "energy",
    "logistics",
    "analytics",
    "capital",
    "health",
    "media",
    "robotics",
    "software",
    "dynamics",
    "partners",
    "networks",
    "materials",
    "motors",
    "pharma",
    "retail",
    "textiles",
    "ventures",
)
LEGAL_FORMS = ["Inc.", "Ltd", "LLC", "GmbH", "AG", "S.A.", "B.V.", "Pty Ltd", "PLC", "Corp.", ""]
TLDS = ["com", "io", "net", "de", "co.uk", "com.au", "fr", "nl"]
INDUSTRIES = ["Software", "Manufacturing", "Retail", "Energy", "Finance", "Healthcare"]
KINDS = ("domain", "subdomain", "name", "fuzzy_name", "no_match", "mixed")
INSERT_CHUNK = 5000


def _company(rng: random.Random) -> tuple[str, str]:
    word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3))))
    second = rng.choice(SECOND_WORDS)
    return word, second


def _book(start: int, stop: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed + start)
    accounts = []
    for index in range(start, stop):
        word, second = _company(rng)
        name = f"{word.title()} {second.title()} {rng.choice(LEGAL_FORMS)}".strip()
        # The index keeps every domain unique however often a made-up word repeats.
        main = f"{word}{second}{index}.{rng.choice(TLDS)}"
        extra = [f"{word}-{second}{index}.{tld}" for tld in rng.sample(TLDS, rng.choice((0, 0, 1, 2)))]
        accounts.append({"id": f"acc-{index:06d}", "name": name, "domains": [main, *extra], "words": (word, second)})
    return accounts


async def _insert(engine: AsyncEngine, accounts: list[dict[str, Any]]) -> None:
    changed_at = datetime(2026, 11, 1, tzinfo=UTC)
    rows, domains, keys = [], [], []
    for number, account in enumerate(accounts):
        key = normalise.name_key(account["name"])
        rows.append(
            {
                "id": account["id"],
                "name": account["name"],
                "domains": account["domains"],
                "name_key": key,
                "industry": INDUSTRIES[number % len(INDUSTRIES)],
                "employees": 10 + number % 5000,
                "annual_revenue": None,
                "country": "US",
                "owner_rep_id": f"rep-{number % 40}",
                "crm_id": None,
                "version": 1,
                "changed_at": changed_at,
            }
        )
        domains += [{"domain": domain, "account_id": account["id"]} for domain in account["domains"]]
        keys += [{"key": block, "account_id": account["id"], "name_key": key} for block in normalise.blocking_keys(key)]
    async with engine.begin() as connection:
        for table, values in ((BookAccount, rows), (AccountDomain, domains), (AccountNameKey, keys)):
            for start in range(0, len(values), INSERT_CHUNK):
                await connection.execute(insert(table), values[start : start + INSERT_CHUNK])
        await connection.execute(text("ANALYZE"))


def _typo(name: str, rng: random.Random) -> str:
    word, _, rest = name.partition(" ")
    at = rng.randrange(1, len(word))
    return f"{word[:at]}{word[at]}{word[at:]} {rest}"  # one letter doubled


def _leads(kind: str, targets: list[dict[str, Any]], batch: int, rng: random.Random) -> list[LeadReceived]:
    leads = []
    for number in range(batch):
        account = rng.choice(targets)
        chosen = rng.choice(KINDS[:-1]) if kind == "mixed" else kind
        domain = account["domains"][0]
        fields: dict[str, Any] = {"email": f"person{number}@gmail.com", "email_free_mail": True}
        if chosen == "domain":
            fields = {"email": f"person{number}@{domain}"}
        elif chosen == "subdomain":
            fields = {"email": f"person{number}@eu.{domain}"}
        elif chosen == "name":
            word, second = account["words"]
            fields["company"] = f"{word.upper()} {second.upper()}, Limited"
        elif chosen == "fuzzy_name":
            fields["company"] = _typo(account["name"], rng)
        else:
            fields = {"email": f"person{number}@nowhere{number}.example", "company": f"Qzxv{number} Holdings"}
        leads.append(LeadReceived(lead_id=f"lead-{number}", source="api", received_at=datetime.now(UTC), **fields))
    return leads


async def _build(url: str, size: int, seed: int) -> AsyncEngine:
    engine = create_engine(url)
    await run_migrations(engine, MIGRATIONS_DIR)
    await _insert(engine, _book(0, size, seed))
    return engine


async def measure(urls: dict[int, str], batch: int, rounds: int, seed: int) -> dict[int, dict[str, float]]:
    """Median seconds per lead for each book size and kind of lead.

    The books are built first, each in its own database, and every batch is then timed against
    each book in turn, so a neighbour's load on the machine falls on all sizes alike.
    """
    engines: dict[int, AsyncEngine] = {}
    timings: dict[int, dict[str, list[float]]] = {size: {kind: [] for kind in KINDS} for size in urls}
    try:
        for size, url in sorted(urls.items()):
            engines[size] = await _build(url, size, seed)
        # The same accounts open every book (one seed), and the leads aim at the smallest book.
        targets = _book(0, min(urls), seed)
        rng = random.Random(seed)
        sizes = sorted(engines)
        for round_number in range(rounds + 1):
            for kind in KINDS:
                leads = _leads(kind, targets, batch, rng)
                # Whichever book goes first pays for waking up; the first goes first every other round.
                for size in sizes if round_number % 2 else sizes[::-1]:
                    async with create_session_factory(engines[size])() as session:
                        started = time.perf_counter()
                        matched = await match_many(session=session, leads=leads)
                        elapsed = time.perf_counter() - started
                    _check(kind, matched)
                    if round_number:  # round 0 warms the caches up
                        timings[size][kind].append(elapsed / len(leads))
    finally:
        for engine in engines.values():
            await engine.dispose()
    return {
        size: {kind: statistics.median(values) for kind, values in per_kind.items()}
        for size, per_kind in timings.items()
    }


def _check(kind: str, matched: list[Any]) -> None:
    hits = sum(found is not None for found in matched)
    if (kind == "no_match" and hits) or (kind not in ("no_match", "mixed") and hits < len(matched) * 0.9):
        raise RuntimeError(f"{kind}: {hits} of {len(matched)} leads matched; the benchmark is broken")


@asynccontextmanager
async def _databases(
    backend: str, sizes: list[int], scratch: Path, admin_url: str | None
) -> AsyncIterator[dict[int, str]]:
    """A fresh database per book size: SQLite files, or PostgreSQL databases dropped afterwards."""
    if backend == "sqlite":
        yield {size: f"sqlite+aiosqlite:///{scratch / f'accounts-{size}.db'}" for size in sizes}
        return
    assert admin_url is not None
    url = make_url(admin_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    names = {size: f"lr_bench_accounts_{size}_{uuid4().hex[:8]}" for size in sizes}
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        for name in names.values():
            await connection.execute(f'CREATE DATABASE "{name}"')
        yield {size: url.set(database=name).render_as_string(hide_password=False) for size, name in names.items()}
    finally:
        for name in names.values():
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


def _report(backend: str, results: dict[int, dict[str, float]]) -> list[str]:
    small, large = min(results), max(results)
    lines = [f"{backend}: median cost per lead (µs), book of {small:,} and {large:,} accounts, ratio"]
    for kind in KINDS:
        low, high = results[small][kind] * 1e6, results[large][kind] * 1e6
        lines.append(f"  {kind:11} {low:8.1f} {high:8.1f}   x{high / low:.2f}")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000", help="book sizes, smallest first (accounts)")
    parser.add_argument("--batch", type=int, default=200, help="leads per match_many call")
    parser.add_argument("--rounds", type=int, default=15, help="batches timed per kind and size")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--postgres", help="a PostgreSQL URL (postgresql+asyncpg://...) whose user may create the scratch databases"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    backends = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    with tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            async with _databases(backend, sizes, Path(scratch), args.postgres) as urls:
                results = await measure(urls, args.batch, args.rounds, args.seed)
            for line in _report(backend, results):
                print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    asyncio.run(main())
