"""The account book: leads meet their accounts by domain, subdomain, name or a near miss, and never by free mail."""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rapidfuzz import fuzz
from sqlalchemy.ext.asyncio import AsyncEngine

from leadrelay.db import SessionFactory, create_engine, create_session_factory, run_migrations
from leadrelay.events import AccountChanged, AccountMatch, LeadReceived, MatchMethod, new_event
from scoring.accounts import normalise
from scoring.accounts.handlers import on_account_changed
from scoring.accounts.service import MatchedAccount, apply_changes, enrich, match_many
from scoring.main import MIGRATIONS_DIR

CHANGED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _account(account_id: str, name: str, *domains: str, **fields: Any) -> AccountChanged:
    values: dict[str, Any] = {"changed_at": CHANGED_AT, "version": 1, **fields}
    return AccountChanged(account_id=account_id, name=name, domains=list(domains), **values)


def _lead(email: str, **fields: Any) -> LeadReceived:
    return LeadReceived(
        lead_id="lead-" + email, email=email, source="api", received_at=CHANGED_AT + timedelta(days=1), **fields
    )


BOOK = [
    _account(
        "acc-acme",
        "Acme, Inc.",
        "acme.com",
        "Acme.io",
        domain="www.acme-corp.com",
        industry="Manufacturing",
        employees=1200,
        country="US",
        owner_rep_id="rep-ada",
    ),
    _account("acc-globex", "Globex Corporation", "globex.com", industry="Energy", annual_revenue=5_000_000),
    _account("acc-initech", "Initech GmbH"),
    _account("acc-socgen", "Société Générale S.A."),
    _account("acc-umbrella", "Umbrella Pty Ltd", "umbrella.com.au"),
    _account("acc-hooli", "Hooli Technologies"),
    # Two accounts claiming one domain: the lower id wins, every time.
    _account("acc-shared-b", "Shared B", "shared.example"),
    _account("acc-shared-a", "Shared A", "shared.example"),
    _account("acc-couk", "Registry Ltd", "co.uk"),
    _account("acc-zorbo-b", "Zorbo Widgets"),
    _account("acc-zorbo-a", "Zorbo Widgets Inc"),
]

# (label, lead, expected account id, method, confidence): one batch, answered in order.
MATCHING_CASES: list[tuple[str, LeadReceived, tuple[str, MatchMethod, float] | None]] = [
    ("exact domain", _lead("ada@acme.com"), ("acc-acme", MatchMethod.DOMAIN, 1.0)),
    ("second domain", _lead("bo@acme.io"), ("acc-acme", MatchMethod.DOMAIN, 1.0)),
    ("main domain given as domain, www stripped", _lead("cy@acme-corp.com"), ("acc-acme", MatchMethod.DOMAIN, 1.0)),
    (
        "intake's email_domain",
        _lead("di@x.example", email_domain="globex.com"),
        ("acc-globex", MatchMethod.DOMAIN, 1.0),
    ),
    ("subdomain", _lead("ed@eu.acme.com"), ("acc-acme", MatchMethod.SUBDOMAIN, 0.95)),
    ("deep subdomain", _lead("fi@a.b.globex.com"), ("acc-globex", MatchMethod.SUBDOMAIN, 0.95)),
    ("country second level", _lead("gu@sydney.umbrella.com.au"), ("acc-umbrella", MatchMethod.SUBDOMAIN, 0.95)),
    ("never climbs to a public suffix", _lead("ha@someone.co.uk"), None),
    (
        "website domain",
        _lead("ian@unknown.example", website="https://www.Globex.com/about"),
        ("acc-globex", MatchMethod.DOMAIN, 1.0),
    ),
    ("free mail refused", _lead("jo@gmail.com"), None),
    ("free mail flagged by intake refused", _lead("ka@acme.com", email_free_mail=True), None),
    (
        "free mail falls through to the name",
        _lead("li@gmail.com", company="ACME inc"),
        ("acc-acme", MatchMethod.NAME, 0.9),
    ),
    (
        "legal suffix and punctuation",
        _lead("mo@x.example", company="Initech, G.m.b.H."),
        ("acc-initech", MatchMethod.NAME, 0.9),
    ),
    ("accents and case", _lead("ne@x.example", company="SOCIETE GENERALE"), ("acc-socgen", MatchMethod.NAME, 0.9)),
    ("several legal forms", _lead("ol@x.example", company="Umbrella Ltd."), ("acc-umbrella", MatchMethod.NAME, 0.9)),
    (
        "fuzzy name",
        _lead("pa@x.example", company="Hooli Technolgies Inc"),
        ("acc-hooli", MatchMethod.FUZZY_NAME, 0.8743),
    ),
    ("tie on a name", _lead("ua@x.example", company="zorbo widgets"), ("acc-zorbo-a", MatchMethod.NAME, 0.9)),
    (
        "tie on a near miss",
        _lead("va@x.example", company="Zorbo Widgetz"),
        (
            "acc-zorbo-a",
            MatchMethod.FUZZY_NAME,
            round(0.9 * fuzz.token_sort_ratio("zorbo widgetz", "zorbo widgets") / 100, 4),
        ),
    ),
    ("unrelated name", _lead("qi@x.example", company="Hoolix Foods"), None),
    ("no company, unknown domain", _lead("ru@nowhere.example"), None),
    ("tie on a domain", _lead("sa@shared.example"), ("acc-shared-a", MatchMethod.DOMAIN, 1.0)),
    ("domain before name", _lead("tu@globex.com", company="Acme"), ("acc-globex", MatchMethod.DOMAIN, 1.0)),
]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """Scoring's schema, by its own migrations, on the test's backend."""
    engine: AsyncEngine = create_engine(database_url)
    await run_migrations(engine, MIGRATIONS_DIR)
    yield create_session_factory(engine)
    await engine.dispose()


async def _apply(sessions: SessionFactory, changes: Sequence[AccountChanged]) -> None:
    async with sessions() as session:
        await apply_changes(session=session, changes=changes)
        await session.commit()


async def _match(
    sessions: SessionFactory, leads: Sequence[LeadReceived], **options: float
) -> list[MatchedAccount | None]:
    async with sessions() as session:
        return await match_many(session=session, leads=leads, **options)


def _summary(matched: MatchedAccount | None) -> tuple[str, MatchMethod, float] | None:
    return None if matched is None else (matched.match.account_id, matched.match.method, matched.match.confidence)


async def test_a_mixed_batch_matches_each_lead_in_order(sessions: SessionFactory) -> None:
    await _apply(sessions, BOOK)
    matched = await _match(sessions, [lead for _, lead, _ in MATCHING_CASES])

    assert [(label, _summary(found)) for (label, _, _), found in zip(MATCHING_CASES, matched, strict=True)] == [
        (label, expected) for label, _, expected in MATCHING_CASES
    ]
    acme = matched[0]
    assert acme is not None
    assert acme.match.owner_rep_id == "rep-ada"
    assert acme.fields == {
        "name": "Acme, Inc.",
        "domains": ["acme.com", "acme.io", "acme-corp.com"],
        "industry": "Manufacturing",
        "employees": 1200,
        "annual_revenue": None,
        "country": "US",
        "owner_rep_id": "rep-ada",
        "crm_id": None,
    }


async def test_fuzzy_threshold_takes_a_name_just_above_it_and_refuses_one_just_below(sessions: SessionFactory) -> None:
    await _apply(sessions, [_account("acc-vandelay", "Vandelay Industries")])
    lead = _lead("ge@x.example", company="Vandelay Industry")
    similarity = fuzz.token_sort_ratio("vandelay industry", "vandelay industries") / 100

    (above,) = await _match(sessions, [lead], fuzzy_threshold=similarity - 0.001)
    (below,) = await _match(sessions, [lead], fuzzy_threshold=similarity + 0.001)
    (default,) = await _match(sessions, [lead])

    assert _summary(above) == ("acc-vandelay", MatchMethod.FUZZY_NAME, round(0.9 * similarity, 4))
    assert below is None
    assert _summary(default) == _summary(above)  # 0.889 clears the default 0.85


async def test_a_late_older_change_changes_nothing(sessions: SessionFactory) -> None:
    newer = _account("acc-1", "Newco", "new.example", version=2, industry="Software")
    older = _account("acc-1", "Oldco", "old.example", version=1, changed_at=CHANGED_AT + timedelta(hours=1))
    await _apply(sessions, [newer])
    await _apply(sessions, [older, newer])  # late, and a redelivery

    by_new, by_old = await _match(sessions, [_lead("a@new.example"), _lead("b@old.example")])

    assert by_new is not None
    assert (by_new.fields["name"], by_new.fields["industry"]) == ("Newco", "Software")
    assert by_old is None


async def test_without_versions_the_later_change_wins(sessions: SessionFactory) -> None:
    first = _account("acc-1", "Firstco", "first.example", version=None)
    later = _account("acc-1", "Laterco", "later.example", version=None, changed_at=CHANGED_AT + timedelta(minutes=1))
    await _apply(sessions, [later, first])  # one batch, out of order

    by_first, by_later = await _match(sessions, [_lead("a@first.example"), _lead("b@later.example")])

    assert by_first is None
    assert by_later is not None
    assert by_later.fields["name"] == "Laterco"


async def test_without_versions_a_late_earlier_change_changes_nothing(sessions: SessionFactory) -> None:
    later = _account("acc-1", "Laterco", "later.example", version=None, changed_at=CHANGED_AT + timedelta(minutes=1))
    await _apply(sessions, [later])
    await _apply(sessions, [_account("acc-1", "Firstco", "first.example", version=None)])

    by_first, by_later = await _match(sessions, [_lead("a@first.example"), _lead("b@later.example")])

    assert by_first is None
    assert by_later is not None
    assert by_later.fields["name"] == "Laterco"


async def test_a_long_name_full_of_ampersands_is_stored(sessions: SessionFactory) -> None:
    name = "A & " * 74 + "Co"  # 298 characters whose key is longer than 300
    await _apply(sessions, [_account("acc-1", name, "amp.example")])

    (matched,) = await _match(sessions, [_lead("a@amp.example")])

    assert matched is not None
    assert matched.fields["name"] == name


async def test_a_dropped_domain_and_an_old_name_stop_matching(sessions: SessionFactory) -> None:
    await _apply(sessions, [_account("acc-1", "Oldname Ltd", "keep.example", "drop.example", version=1)])
    await _apply(sessions, [_account("acc-1", "Newname Ltd", "keep.example", version=2)])

    matched = await _match(
        sessions,
        [
            _lead("a@keep.example"),
            _lead("b@drop.example"),
            _lead("c@x.example", company="Oldname"),
            _lead("d@x.example", company="Newname"),
        ],
    )

    assert [_summary(found) for found in matched] == [
        ("acc-1", MatchMethod.DOMAIN, 1.0),
        None,
        None,
        ("acc-1", MatchMethod.NAME, 0.9),
    ]


async def test_the_handler_stores_a_run_of_account_changed_events(sessions: SessionFactory) -> None:
    events = [new_event(change, source="leadrelay/intake") for change in BOOK[:2]]
    async with sessions() as session:
        await on_account_changed(events, session)
        await on_account_changed(events, session)  # redelivered
        await session.commit()

    matched = await _match(sessions, [_lead("a@acme.com"), _lead("b@globex.com")])

    assert [found.match.account_id if found else None for found in matched] == ["acc-acme", "acc-globex"]


async def test_an_empty_batch_needs_nothing(sessions: SessionFactory) -> None:
    await _apply(sessions, [])
    assert await _match(sessions, []) == []


ACCOUNT_FIELDS = {
    "name": "Acme, Inc.",
    "domains": ["acme.com"],
    "industry": "Manufacturing",
    "employees": 1200,
    "annual_revenue": 9_000_000,
    "country": "US",
    "owner_rep_id": "rep-ada",
    "crm_id": "crm-1",
}
ACME = MatchedAccount(
    match=AccountMatch(account_id="acc-acme", method=MatchMethod.DOMAIN, confidence=1.0, owner_rep_id="rep-ada"),
    fields=ACCOUNT_FIELDS,
)

# (label, the lead's facts, the fields the account fills)
ENRICH_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("fills all it lacks", {"email": "a@acme.com"}, ["company", "industry", "employees", "annual_revenue", "country"]),
    (
        "keeps what the lead has",
        {"company": "ACME", "industry": "Retail", "employees": 5, "annual_revenue": 1, "country": "DE"},
        [],
    ),
    (
        "empty text counts as missing",
        {"company": " ", "industry": "", "employees": 0, "country": None},
        ["company", "industry", "annual_revenue", "country"],
    ),
]


@pytest.mark.parametrize(("facts", "filled"), [case[1:] for case in ENRICH_CASES], ids=[c[0] for c in ENRICH_CASES])
def test_enrichment_fills_only_what_the_lead_lacks(facts: dict[str, Any], filled: list[str]) -> None:
    enriched, names = enrich(facts, ACME)

    assert names == filled
    assert enriched["account"] == ACCOUNT_FIELDS
    lent = {**{name: ACCOUNT_FIELDS[name] for name in filled if name != "company"}, "account": ACCOUNT_FIELDS}
    if "company" in filled:
        lent["company"] = ACCOUNT_FIELDS["name"]
    assert enriched == {**facts, **lent}


def test_no_account_enriches_nothing() -> None:
    assert enrich({"company": None}, None) == ({"company": None}, [])


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme, Inc.", "acme"),
        ("ACME GmbH & Co. KG", "acme"),
        ("The Acme Co., Ltd.", "acme"),
        ("Acme Pty Ltd", "acme"),
        ("acme   limited", "acme"),
        ("Acme Corporation", "acme"),
        ("Acme S.A.S.", "acme"),
        ("Acme B.V.", "acme"),
        ("Acme PLC", "acme"),
        ("Acme LLC", "acme"),
        ("Acme AG", "acme"),
        ("Société Générale S.A.", "societe generale"),
        ("McDonald\u2019s Corp", "mcdonalds"),
        ("Ben & Jerry's", "ben and jerrys"),
        ("Johnson and Johnson", "johnson and johnson"),
        ("Company", "company"),
        ("ÖKO-Strom GmbH", "oko strom"),
        ("Ромашка", "ромашка"),
        ("Co-operative Bank", "co operative bank"),
    ],
)
def test_names_are_normalised(name: str, key: str) -> None:
    assert normalise.name_key(name) == key


@pytest.mark.parametrize(
    ("host", "parents"),
    [
        ("acme.com", []),
        ("eu.acme.com", ["acme.com"]),
        ("a.b.acme.com", ["b.acme.com", "acme.com"]),
        ("acme.co.uk", []),
        ("eu.acme.co.uk", ["acme.co.uk"]),
        ("eu.acme.com.au", ["acme.com.au"]),
    ],
)
def test_subdomains_climb_to_the_registrable_domain_and_no_further(host: str, parents: list[str]) -> None:
    assert normalise.parent_domains(host) == parents


@pytest.mark.parametrize(
    ("variant", "shares"),
    [
        ("acmee widgets", True),  # a letter added
        ("acm widgets", True),  # missing
        ("acne widgets", True),  # changed
        ("amce widgets", True),  # two swapped
        ("acme wigdets", True),
        ("acme widgets international", True),  # past the first letters anything goes
        ("acmewidgets", True),
        ("zenith widgets", False),
        ("acne wigdets", False),  # two typos in the first letters
    ],
)
def test_names_a_typo_apart_share_a_blocking_key(variant: str, shares: bool) -> None:
    assert bool(normalise.blocking_keys("acme widgets") & normalise.blocking_keys(variant)) is shares
