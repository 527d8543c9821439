"""Benchmark: the cost of evaluating one lead against an ICP, with a 200-criterion document and the demo ICP.

Run: .venv/bin/python bench/icp_scoring.py [--leads 20000] [--batch 500] [--seed 7]
It compiles each document once, builds synthetic leads (varied titles, industries, countries, sizes,
technologies and zero to six engagements each, so the per-value outcome caches miss as they would on
real traffic), evaluates every lead in batches and prints the median per-lead cost of the batches
(target: under 0.2 ms per lead with 200 criteria). Costs are this process's CPU time, so
neighbours on a shared machine weigh on them less than on wall-clock time.
"""

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from leadrelay.stages import ActivityType
from scoring.icp.document import IcpDocument, check
from scoring.icp.engine import CompiledIcp, Engagement, compile_icp
from scoring.icp.regions import REGIONS

DEMO_ICP = Path(__file__).resolve().parent.parent / "deploy" / "demo" / "icp.yaml"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
INDUSTRIES = [f"industry {n}" for n in range(40)] + ["software", "financial services", "logistics", "retail"]
WORDS = [
    "chief",
    "vp",
    "head",
    "director",
    "manager",
    "lead",
    "senior",
    "engineer",
    "sales",
    "marketing",
    "operations",
    "finance",
    "analyst",
    "developer",
    "founder",
    "product",
    "data",
    "growth",
    "it",
    "security",
]
TECHNOLOGIES = [f"tech{n}" for n in range(60)] + ["salesforce", "hubspot", "snowflake"]
SOURCES = ["webinar", "pricing-page", "ebook", "trade-show", "referral", "paid-search", "organic"]
ENGAGEMENTS = ["demo_requested", "pricing_page_viewed", "content_downloaded", "webinar_attended", "email_clicked",
               "form_submitted", "reengaged"]  # fmt: skip
COUNTRIES = sorted(REGIONS["EMEA"] | REGIONS["AMER"] | REGIONS["APAC"])


def large_document(criteria: int, rng: random.Random) -> dict[str, Any]:
    """A valid document of `criteria` fit criteria of every type, ten disqualifiers and full engagement."""
    makers = [
        lambda n: {"type": "in", "field": rng.choice(["industry", "account.industry", "source", "utm_source"]),
                   "values": rng.sample(INDUSTRIES + SOURCES, 6), "points": rng.randint(-10, 20)},
        lambda n: {"type": "bands", "field": rng.choice(["employees", "annual_revenue", "account.employees"]),
                   "bands": [{"max": 49, "points": 0}, {"min": 50, "max": 999, "points": 10},
                             {"min": 1000, "max": 9999, "points": 15}, {"min": 10000, "points": 5}]},
        lambda n: {"type": "region", "field": rng.choice(["country", "account.country"]),
                   "regions": rng.sample(sorted(REGIONS), 2), "points": rng.randint(0, 15)},
        lambda n: {"type": "contains_any", "field": "attributes.technologies",
                   "values": rng.sample(TECHNOLOGIES, 5), "points": rng.randint(0, 10)},
        lambda n: {"type": "keywords", "field": "job_title", "groups": [
            {"label": f"g{g}", "words": rng.sample(WORDS, 3), "points": 10 - g} for g in range(4)]},
        lambda n: {"type": "flag", "field": rng.choice(["email_free_mail", "email_disposable", "marketing_opt_in"]),
                   "points": rng.randint(-20, 5)},
        lambda n: {"type": "exists", "field": rng.choice(["company", "website", "attributes.phone_verified"]),
                   "points": rng.randint(0, 5)},
        lambda n: {"type": "domain", "field": "email_domain", "domains": [f"d{rng.randrange(500)}.example"],
                   "points": 5},
    ]  # fmt: skip
    fit = [{"name": f"c{n}", **makers[n % len(makers)](n)} for n in range(criteria)]
    disqualifiers = [
        {"name": f"q{n}", "type": "keywords", "field": "job_title", "words": [f"word{n}", "student"]} for n in range(5)
    ] + [
        {"name": f"r{n}", "type": "domain", "field": "email_domain", "domains": [f"rival{n}.example"]} for n in range(5)
    ]
    total = sum(max(0, item.get("points", 15)) for item in fit)
    return {
        "fit": fit,
        "disqualifiers": disqualifiers,
        "engagement": {"points": dict.fromkeys(ENGAGEMENTS, 10) | {"demo_requested": 40}, "half_life_days": 14},
        "grades": {"fit": {"A": total // 3, "B": total // 5, "C": total // 8},
                   "engagement": {"1": 40, "2": 20, "3": 5}},
        "mql": {"any": [{"name": "fit", "fit_at_least": "B", "engagement_at_least": 2},
                        {"name": "demo", "fit_at_least": "C", "activity": "demo_requested"}]},
    }  # fmt: skip


def synthetic_lead(rng: random.Random) -> tuple[dict[str, Any], list[Engagement]]:
    """Facts and engagements of one made-up lead."""
    facts: dict[str, Any] = {
        "job_title": " ".join(rng.sample(WORDS, rng.randint(1, 3))).title(),
        "industry": rng.choice(INDUSTRIES),
        "employees": rng.choice([None, rng.randint(1, 20_000)]),
        "annual_revenue": rng.choice([None, rng.randint(100_000, 5_000_000_000)]),
        "country": rng.choice(COUNTRIES),
        "source": rng.choice(SOURCES),
        "company": rng.choice([None, "Acme"]),
        "email_domain": f"d{rng.randrange(2000)}.example",
        "email_free_mail": rng.random() < 0.2,
        "email_disposable": rng.random() < 0.02,
        "attributes": {"technologies": ", ".join(rng.sample(TECHNOLOGIES, rng.randint(0, 4)))},
    }
    if rng.random() < 0.5:
        facts["account"] = {"industry": rng.choice(INDUSTRIES), "employees": rng.randint(1, 50_000), "country": "DE"}
    engagements = [
        Engagement(ActivityType(rng.choice(ENGAGEMENTS)), NOW - timedelta(days=rng.uniform(0, 90)))
        for _ in range(rng.randint(0, 6))
    ]
    return facts, engagements


def per_lead_ms(icp: CompiledIcp, leads: list[tuple[dict[str, Any], list[Engagement]]], batch: int) -> list[float]:
    """Per-lead cost of each batch, in milliseconds."""
    costs = []
    for start in range(0, len(leads), batch):
        chunk = leads[start : start + batch]
        began = time.process_time()
        for facts, engagements in chunk:
            icp.evaluate(facts, engagements, now=NOW)
        costs.append((time.process_time() - began) * 1000 / len(chunk))
    return costs


def main() -> None:
    """Compile both documents, evaluate the synthetic leads, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--criteria", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    documents = {
        f"{args.criteria}-criterion ICP": large_document(args.criteria, rng),
        "demo ICP (deploy/demo/icp.yaml)": yaml.safe_load(DEMO_ICP.read_text())["document"],
    }
    leads = [synthetic_lead(rng) for _ in range(args.leads)]
    for title, raw in documents.items():
        document = IcpDocument.model_validate(raw)
        errors = check(document)
        if errors:
            sys.exit(f"{title} is invalid: {errors[:3]}")
        began = time.perf_counter()
        icp = compile_icp(document, version="bench")
        compile_ms = (time.perf_counter() - began) * 1000
        costs = per_lead_ms(icp, leads, args.batch)
        grades = {icp.evaluate(facts, engagements, now=NOW).grade for facts, engagements in leads[:2000]}
        line = (
            f"{title}: {len(document.fit)} fit criteria, {len(document.disqualifiers)} disqualifiers; "
            f"compile {compile_ms:.1f} ms; evaluate median {statistics.median(costs):.3f} ms per lead "
            f"(fastest batch {min(costs):.3f}, slowest {max(costs):.3f}; {args.leads} leads in batches of "
            f"{args.batch}); {len(grades)} distinct grades among the first 2000"
        )
        print(line, flush=True)  # noqa: T201  (a benchmark prints its figures)


if __name__ == "__main__":
    main()
