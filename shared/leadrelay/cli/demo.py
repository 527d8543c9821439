"""`leadrelay demo`: a realistic mix of traffic for a running stack, at a steady rate, with a progress bar.

Signed webhooks from every kind of demo source (`make run` configures them), REST leads and batches,
people coming back, account syncs and marketing engagement. Everything goes to intake.

It opens with the demo accounts (owned by demo reps) and one lead for each kind of rule in
deploy/demo/routing.yaml, so even a short run shows an account owner, a queue, nurture and teams at work.
"""

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import uuid4

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leadrelay import signing
from leadrelay.cli import output
from leadrelay.cli.http import CliError, ExitCode, ServiceClient, service_url
from leadrelay.cli.options import IntakeUrl, JsonFlag, KeyOption, require_key
from leadrelay.demo import DEMO_SOURCES, DEMO_TOKEN_HEADER

FIRST_NAMES = ["Ada", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Alan", "Katherine", "Dennis", "Radia"]
LAST_NAMES = ["Lovelace", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Turing", "Johnson", "Ritchie", "Perlman"]
# name, domain, industry, employees, owner (a demo rep of deploy/demo/teams.yaml)
COMPANIES = [
    ("Analytical Engines", "analytical.example", "software", 250, "rep-ada"),
    ("Difference Works", "difference.example", "manufacturing", 1200, "rep-alan"),
    ("Compiler Co", "compiler.example", "software", 40, "rep-default"),
    ("Mainframe Bank", "mainframe.example", "financial services", 8000, "rep-grace"),
    ("Relay Logistics", "relay.example", "logistics", 600, "rep-default"),
]
TITLES = ["CTO", "Head of Engineering", "VP Sales", "Marketing Manager", "Developer", "Student", "CEO"]
SOURCES = ["webinar", "pricing-page", "ebook", "trade-show", "referral"]
ENGAGEMENTS = ["email_clicked", "pricing_page_viewed", "content_downloaded", "webinar_attended", "demo_requested"]
COUNTRIES = ["GB", "DE", "FR", "US", "NL"]

# The opening leads, after the accounts: (company, country, title, source) and the demo rule each reaches
# under the demo ICP. The account owner's lead comes last, so scoring has had the accounts for a moment.
OPENING = [
    ("Analytical Engines", "GB", "Head of Engineering", "trade-show"),  # trade_show_follow_up: EMEA queue
    ("Relay Logistics", "FR", "Developer", "webinar"),  # nurture_weak_fit: fit C, not an MQL
    ("Compiler Co", "US", "CTO", "referral"),  # us_referrals: rep-grace
    ("Analytical Engines", "DE", "VP Sales", "webinar"),  # emea: team-emea
    ("Relay Logistics", "US", "VP Sales", "pricing-page"),  # everyone_else: the pool
    ("Mainframe Bank", "US", "CTO", "pricing-page"),  # enterprise_accounts: the owner, rep-grace
]

# What one step of the demo sends, and how often (weights); webhooks cycle through every demo source.
MIX = {
    "webhook": 40,
    "rest_lead": 22,
    "rest_batch": 5,
    "returning": 11,
    "account": 11,
    "engagement": 11,
}


@dataclass
class Person:
    """A made-up person (reserved example domains only)."""

    first_name: str
    last_name: str
    company: str
    domain: str
    title: str
    country: str
    serial: int
    industry: str
    employees: int

    @property
    def email(self) -> str:
        return f"{self.first_name}.{self.last_name}.{self.serial}@{self.domain}".lower()


@dataclass
class Tally:
    """What was sent, by kind, and what came back."""

    sent: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    lead_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    def record(self, kind: str, response: httpx.Response) -> None:
        self.sent[kind] += 1
        self.answers[f"{kind} {response.status_code}"] += 1
        if kind.startswith("account"):
            return  # its results are accounts, not leads
        if response.status_code in (200, 201, 202) and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            body = response.json()
            if isinstance(body, dict):
                self.lead_ids.extend(body.get("lead_ids", []))
                if "id" in body and kind in ("rest_lead", "returning"):
                    self.lead_ids.append(body["id"])
                for result in body.get("results", []):
                    if isinstance(result, dict) and "id" in result:
                        self.lead_ids.append(result["id"])


class Demo:
    """One run: people, the intake client and the tally."""

    def __init__(self, intake: ServiceClient, base_url: str, *, seed: int | None) -> None:
        self.intake, self.base_url = intake, base_url.rstrip("/")
        self.random = random.Random(seed)
        self.tally = Tally()
        self.serial = 0
        self.webhook_sources = sorted(DEMO_SOURCES)
        self.webhooks_sent = 0
        self.accounts_synced = False
        self.opening = list(OPENING)

    def person(self, company: str | None = None) -> Person:
        self.serial += 1
        name, domain, industry, employees, _owner = (
            next(row for row in COMPANIES if row[0] == company) if company else self.random.choice(COMPANIES)
        )
        return Person(
            self.random.choice(FIRST_NAMES),
            self.random.choice(LAST_NAMES),
            name,
            domain,
            self.random.choice(TITLES),
            self.random.choice(COUNTRIES),
            self.serial + self.random.randrange(1_000_000) * 1000,
            industry,
            employees,
        )

    def lead_body(self, person: Person, *, source: str | None = None) -> dict[str, Any]:
        self.tally.emails.append(person.email)
        return {
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "company": person.company,
            "job_title": person.title,
            "country": person.country,
            "industry": person.industry,
            "employees": person.employees,
            "source": source or self.random.choice(SOURCES),
            "campaign": "leadrelay-demo",
        }

    def step(self) -> None:
        if not self.accounts_synced:
            self.accounts_synced = True
            self.tally.record("accounts", self.send("POST", "/v1/accounts:batch", json={"accounts": self.accounts()}))
            return
        if self.opening:
            company, country, title, source = self.opening.pop(0)
            person = replace(self.person(company), country=country, title=title)
            self.tally.record("rest_lead", self.send("POST", "/v1/leads", json=self.lead_body(person, source=source)))
            return
        kinds, weights = zip(*MIX.items(), strict=True)
        kind = self.random.choices(kinds, weights)[0]
        if kind in ("returning", "engagement") and not self.tally.emails:
            kind = "rest_lead"
        if kind == "webhook":
            # Every kind in turn, so a short run still signs for each platform.
            name = self.webhook_sources[self.webhooks_sent % len(self.webhook_sources)]
            self.webhooks_sent += 1
            self.tally.record(f"webhook {DEMO_SOURCES[name][0]}", self.webhook(name))
            return
        senders: dict[str, Callable[[], httpx.Response]] = {
            "rest_lead": lambda: self.send("POST", "/v1/leads", json=self.lead_body(self.person())),
            "rest_batch": lambda: self.send(
                "POST", "/v1/leads:batch", json={"leads": [self.lead_body(self.person()) for _ in range(5)]}
            ),
            "returning": self.returning,
            "account": self.account,
            "engagement": self.engagement,
        }
        self.tally.record(kind, senders[kind]())

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.intake.send(method, path, **kwargs)

    def returning(self) -> httpx.Response:
        email = self.random.choice(self.tally.emails)
        return self.send("POST", "/v1/leads", json={"email": email, "source": "pricing-page", "job_title": "CTO"})

    def accounts(self) -> list[dict[str, Any]]:
        """Every demo account, each owned by a demo rep."""
        return [{"id": _account_id(row[1]), **self.account_body(row)} for row in COMPANIES]

    def account_body(self, row: tuple[str, str, str, int, str]) -> dict[str, Any]:
        company, domain, industry, employees, owner = row
        return {
            "name": company,
            "domains": [domain],
            "industry": industry,
            "employees": employees,
            "country": self.random.choice(COUNTRIES),
            "owner_rep_id": owner,
        }

    def account(self) -> httpx.Response:
        row = self.random.choice(COMPANIES)
        return self.send("PUT", f"/v1/accounts/{_account_id(row[1])}", json=self.account_body(row))

    def engagement(self) -> httpx.Response:
        if not self.tally.lead_ids:
            return self.send("POST", "/v1/leads", json=self.lead_body(self.person()))
        lead_id = self.random.choice(self.tally.lead_ids)
        body = {"type": self.random.choice(ENGAGEMENTS), "occurred_at": _now()}
        return self.send("POST", f"/v1/leads/{lead_id}/activities", json=body)

    def webhook(self, name: str) -> httpx.Response:
        kind, secret = DEMO_SOURCES[name]
        person = self.person()
        self.tally.emails.append(person.email)
        path = f"/v1/webhooks/{name}"
        body, headers, query = _signed(kind, secret, person, uri=f"{self.base_url}{path}")
        return self.send("POST", path + query, content=body, headers=headers)


def _account_id(domain: str) -> str:
    return f"acc-{domain.split('.')[0]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _signed(kind: str, secret: str, person: Person, *, uri: str) -> tuple[bytes, dict[str, str], str]:
    """The body, headers and query string of a delivery as the platform of `kind` sends it."""
    json_type = {"Content-Type": "application/json"}
    if kind == "hubspot":
        properties = {"email": person.email, "firstname": person.first_name, "lastname": person.last_name}
        body = _compact({"vid": person.serial, "properties": {k: {"value": v} for k, v in properties.items()}})
        stamp = str(int(time.time() * 1000))
        signature = signing.hubspot_v3(secret, method="POST", uri=uri, body=body, timestamp=stamp)
        return body, {**json_type, "X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}, ""
    if kind == "mautic":
        contact = {"id": person.serial, "fields": {"all": {"email": person.email, "firstname": person.first_name}}}
        body = _compact({"mautic.lead_post_save_new": [{"contact": contact, "timestamp": _now()}]})
        return body, {**json_type, "Webhook-Signature": signing.mautic(secret, body)}, ""
    if kind == "segment":
        traits = {"email": person.email, "name": f"{person.first_name} {person.last_name}"}
        call = {"type": "identify", "messageId": str(uuid4()), "userId": f"u{person.serial}", "traits": traits}
        body = _compact({**call, "timestamp": _now()})
        return body, {**json_type, "X-Signature": signing.segment(secret, body)}, ""
    if kind == "marketo":
        body = _compact([{"email": person.email, "firstName": person.first_name, "leadId": person.serial}])
        return body, {**json_type, DEMO_TOKEN_HEADER: secret}, ""
    if kind == "pardot":
        form = {"email": person.email, "first_name": person.first_name, "company": person.company}
        query = "?" + urlencode({"token": secret})
        return urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}, query
    msg_id, stamp_seconds = f"msg_{uuid4().hex}", int(time.time())
    data = {"email": person.email, "first_name": person.first_name, "company": person.company}
    body = _compact({"type": "contact.created", "timestamp": _now(), "data": data})
    signature = signing.standard(secret, msg_id=msg_id, timestamp=stamp_seconds, body=body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp_seconds), "webhook-signature": signature}
    return body, {**json_type, **headers}, ""


def demo(
    rate: Annotated[float, typer.Option("--rate", min=0.1, max=500, help="Requests a second.")] = 5.0,
    duration: Annotated[float, typer.Option("--duration", min=1, max=86_400, help="Seconds to run.")] = 60.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Make the mix repeatable.")] = None,
    url: IntakeUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a realistic mix to a running stack: signed webhooks of every kind, REST leads and batches,
    returning people, accounts and engagement. Needs `make run`'s demo sources and a key with
    leads:write, accounts:write and activities:write (the development key has them)."""
    base_url = service_url("intake", url)
    total = max(1, round(rate * duration))
    with ServiceClient(base_url, require_key(key)) as intake:
        run = Demo(intake, base_url, seed=seed)
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]leadrelay demo"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=output.stderr,
            disable=as_json,
        ) as progress:
            task = progress.add_task("sending", total=total)
            for number in range(total):
                # A steady rate: wait for this request's slot (never a burst to catch up).
                time.sleep(max(0.0, started + number / rate - time.monotonic()))
                run.step()
                progress.advance(task)
    summary = {
        "sent": dict(sorted(run.tally.sent.items())),
        "answers": dict(sorted(run.tally.answers.items())),
        "lead_ids": len(set(run.tally.lead_ids)),
        "seconds": round(time.monotonic() - started, 1),
    }
    refused = sum(count for answer, count in run.tally.answers.items() if not answer.endswith(("200", "201", "202")))
    if as_json:
        output.emit_json(summary)
    else:
        rows = [{"answer": answer, "count": count} for answer, count in sorted(run.tally.answers.items())]
        output.stdout.print(output.table(rows, ("answer", "count"), title="leadrelay demo"))
        output.stdout.print(f"{summary['lead_ids']} leads touched in {summary['seconds']} s")
    if refused:
        raise CliError(ExitCode.REFUSED, f"{refused} request(s) were refused; see the answers above")
