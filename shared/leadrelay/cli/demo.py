"""`leadrelay demo`: a realistic mix of traffic for a running stack, at a steady rate, with a progress bar.

Signed webhooks from every kind of demo source (`make run` configures them), REST leads and batches,
people coming back, account syncs and marketing engagement. Everything goes to intake.

It opens with the demo accounts (owned by demo reps) and one lead for each kind of rule in
deploy/demo/routing.yaml, so even a short run shows an account owner, a queue, nurture and teams at work.
Reps respond to a share of the leads a few seconds after they are sent (accepted, then mostly contacted),
so the demo SLA (deploy/demo/sla.yaml) shows obligations met beside the warnings and breaches of the rest.
"""

import heapq
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
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
CONTACT_CHANNELS = ["call", "email", "meeting"]

# Of the leads a rep responds to, this share is also contacted (a first touch) after accepting.
CONTACT_SHARE = 0.7
# How often a response looks for the lead's owner before giving up (a queued or nurtured lead has none).
OWNER_LOOKUPS = 5

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


@dataclass(order=True)
class Response:
    """A rep's response still to send for a lead: the activities left, in order, the next one at `due`."""

    due: float
    lead_id: str = field(compare=False)
    activities: list[str] = field(compare=False)
    lookups: int = field(default=0, compare=False)


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

    def __init__(
        self,
        intake: ServiceClient,
        base_url: str,
        *,
        seed: int | None,
        respond_share: float = 0.5,
        respond_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.intake, self.base_url = intake, base_url.rstrip("/")
        self.random = random.Random(seed)
        # Responses draw from their own generator, so a seed sends the same mix whatever they do.
        self.response_random = random.Random(None if seed is None else seed + 1)
        self.respond_share, self.respond_after, self.clock = respond_share, respond_after, clock
        self.responses: list[Response] = []  # a heap, soonest first
        self.considered: set[str] = set()
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
        """Send the next request: a rep's response that is due, else the next of the mix."""
        if self.responses and self.responses[0].due <= self.clock():
            self.respond(heapq.heappop(self.responses))
            return
        known = len(self.tally.lead_ids)
        self.send_next()
        self.plan_responses(self.tally.lead_ids[known:])

    def plan_responses(self, lead_ids: list[str]) -> None:
        """A share of new leads get a rep's response: accepted after about `respond_after` seconds, maybe contacted."""
        for lead_id in dict.fromkeys(lead_ids):
            if lead_id in self.considered:
                continue
            self.considered.add(lead_id)
            if self.response_random.random() >= self.respond_share:
                continue
            activities = ["accepted"]
            if self.response_random.random() < CONTACT_SHARE:
                activities.append("contacted")
            heapq.heappush(self.responses, Response(self.next_response_at(), lead_id, activities))

    def next_response_at(self) -> float:
        return self.clock() + self.respond_after * self.response_random.uniform(0.5, 1.5)

    def respond(self, response: Response) -> None:
        """The lead's owner sends the next activity; a lead not assigned (yet) is looked at again later."""
        lookup = self.send("GET", f"/v1/leads/{response.lead_id}")
        self.tally.record("lead lookup", lookup)
        owner = lookup.json().get("owner_rep_id") if lookup.status_code == 200 else None
        if owner is None:
            response.lookups += 1
            if response.lookups < OWNER_LOOKUPS:
                response.due = self.next_response_at()
                heapq.heappush(self.responses, response)
            return
        activity = response.activities.pop(0)
        body: dict[str, Any] = {"type": activity, "rep_id": owner, "occurred_at": datetime.now(UTC).isoformat()}
        if activity == "contacted":
            body["channel"] = self.response_random.choice(CONTACT_CHANNELS)
        self.tally.record(
            f"activity {activity}", self.send("POST", f"/v1/leads/{response.lead_id}/activities", json=body)
        )
        if response.activities:
            response.due = self.next_response_at()
            heapq.heappush(self.responses, response)

    def send_next(self) -> None:
        """The next request of the mix: the accounts, the opening leads, then weighted kinds."""
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
    respond_share: Annotated[
        float, typer.Option("--respond-share", min=0, max=1, help="Share of new leads a rep accepts (and may contact).")
    ] = 0.5,
    respond_after: Annotated[
        float, typer.Option("--respond-after", min=0, max=3600, help="About how many seconds reps take to respond.")
    ] = 10.0,
    url: IntakeUrl = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a realistic mix to a running stack: signed webhooks of every kind, REST leads and batches,
    returning people, accounts and engagement; reps accept (and contact) a share of the leads, so the demo SLA
    shows met obligations beside warnings and breaches. Needs `make run`'s demo sources and a key with
    leads:read, leads:write, accounts:write and activities:write (the development key has them)."""
    base_url = service_url("intake", url)
    total = max(1, round(rate * duration))
    with ServiceClient(base_url, require_key(key)) as intake:
        run = Demo(intake, base_url, seed=seed, respond_share=respond_share, respond_after=respond_after)
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
