"""Accounts through HTTP, on SQLite and PostgreSQL: stored, announced once per real change, batches item by item."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from intake.accounts.models import Account
from intake.accounts.schemas import MAX_BATCH
from leadrelay.events import AccountChanged, parse_as
from leadrelay.outbox import OutboxMessage
from leadrelay.testing import Storage

ACCOUNT: dict[str, Any] = {
    "name": "Analytical Engines Ltd",
    "domains": ["Analytical.Example", "www.analytical-engines.example.", "analytical.example"],
    "industry": "Software",
    "employees": 250,
    "annual_revenue": 42_000_000_000,
    "country": "gb",
    "owner_rep_id": "rep-ada",
    "crm_id": "0015g00000AbCdEAAZ",
}


async def _announced(storage: Storage) -> list[AccountChanged]:
    async with storage.sessions() as session:
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.topic == "accounts.changed").order_by(col(OutboxMessage.id))
            )
        ).all()
    return [parse_as(row.payload, AccountChanged).data for row in rows]


async def _stored(storage: Storage) -> list[str]:
    async with storage.sessions() as session:
        return sorted((await session.exec(select(Account.id))).all())


async def test_a_new_account_is_stored_normalised_and_announced(api: httpx.AsyncClient, intake_db: Storage) -> None:
    answer = await api.put("/v1/accounts/acc-1", json=ACCOUNT)

    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == "/v1/accounts/acc-1"
    body = answer.json()
    assert body["domains"] == ["analytical.example", "analytical-engines.example"]
    assert (body["country"], body["version"], body["annual_revenue"]) == ("GB", 1, 42_000_000_000)
    assert (await api.get("/v1/accounts/acc-1")).json() == body
    [event] = await _announced(intake_db)
    assert (event.account_id, event.domain, event.domains, event.owner_rep_id, event.country, event.version) == (
        "acc-1",
        "analytical.example",
        ["analytical.example", "analytical-engines.example"],
        "rep-ada",
        "GB",
        1,
    )


async def test_the_same_put_twice_publishes_once_and_a_change_publishes_again(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    first = (await api.put("/v1/accounts/acc-1", json=ACCOUNT)).json()
    # The same state, spelt differently, is the same state.
    again = await api.put(
        "/v1/accounts/acc-1",
        json={**ACCOUNT, "country": "GB", "domains": ["analytical.example", "analytical-engines.example"]},
    )
    assert again.status_code == 200
    assert again.json() == first
    assert len(await _announced(intake_db)) == 1

    moved = await api.put("/v1/accounts/acc-1", json={**ACCOUNT, "owner_rep_id": "rep-grace"})
    assert moved.status_code == 200
    assert (moved.json()["owner_rep_id"], moved.json()["version"]) == ("rep-grace", 2)
    cleared = await api.put("/v1/accounts/acc-1", json={"name": ACCOUNT["name"]})  # PUT replaces the whole state
    assert (cleared.json()["domains"], cleared.json()["owner_rep_id"], cleared.json()["version"]) == ([], None, 3)
    assert [(event.owner_rep_id, event.version) for event in await _announced(intake_db)] == [
        ("rep-ada", 1),
        ("rep-grace", 2),
        (None, 3),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"domains": ["ada@analytical.example"]}, "domains"),
        ({"domains": ["https://"]}, "domains"),
        ({"domains": ["analytical.example", "localhost"]}, "domains"),
        ({"domains": ["exa mple.com"]}, "domains"),
        ({"domains": ["10.0.0.1"]}, "domains"),
        ({"domains": [f"d{n}.example" for n in range(51)]}, "domains"),
        ({"country": "ßa"}, "country"),
        ({"country": "Narnia"}, "country"),
        ({"country": "XX"}, "country"),
        ({"employees": -1}, "employees"),
        ({"annual_revenue": 10**16}, "annual_revenue"),
        ({"crm_id": "a\x00b"}, "crm_id"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    api: httpx.AsyncClient, intake_db: Storage, change: dict[str, Any], field: str
) -> None:
    answer = await api.put("/v1/accounts/acc-1", json={**ACCOUNT, **change})
    assert answer.status_code == 422, answer.text
    assert field in {error["field"].split(".")[0] for error in answer.json()["errors"]}
    assert await _stored(intake_db) == []
    assert await intake_db.outbox_count() == 0


async def test_countries_and_websites_are_normalised_like_leads(api: httpx.AsyncClient, intake_db: Storage) -> None:
    answer = await api.put(
        "/v1/accounts/acc-1",
        json={
            **ACCOUNT,
            "country": " United Kingdom ",
            "domains": ["HTTPS://www.Analytical.Example:443/about?ref=crm#team", "//cdn.analytical.example/", "uk"],
        },
    )
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == ["domains.2"]
    assert answer.json()["errors"][0]["pointer"] == "/domains/2"

    answer = await api.put(
        "/v1/accounts/acc-1",
        json={**ACCOUNT, "country": " United Kingdom ", "domains": ["HTTPS://www.Analytical.Example:443/about?x=1"]},
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["country"], answer.json()["domains"]) == ("GB", ["analytical.example"])
    for spelling, code in [("gbr", "GB"), ("826", "GB"), ("Deutschland", None), ("germany", "DE"), ("  ", None)]:
        answer = await api.put("/v1/accounts/acc-1", json={**ACCOUNT, "country": spelling})
        if code is None and spelling.strip():
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == "country"
            continue
        assert answer.status_code == 200, answer.text
        assert answer.json()["country"] == code


@pytest.mark.parametrize("account_id", ["has space", "x" * 101, "-starts-with-dash"])
async def test_a_bad_account_id_is_422(api: httpx.AsyncClient, intake_db: Storage, account_id: str) -> None:
    answer = await api.put(f"/v1/accounts/{account_id}", json=ACCOUNT)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "account_id"
    assert await _stored(intake_db) == []


async def test_an_unknown_account_is_404_and_the_scope_is_required(
    api: httpx.AsyncClient, reader_headers: dict[str, str]
) -> None:
    assert (await api.get("/v1/accounts/acc-404")).status_code == 404
    refused = await api.put("/v1/accounts/acc-1", json=ACCOUNT, headers=reader_headers)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "The API key lacks the scope(s): accounts:write."


async def test_a_batch_stores_the_good_items_and_names_what_failed_in_the_bad_ones(
    api: httpx.AsyncClient, intake_db: Storage
) -> None:
    await api.put("/v1/accounts/acc-2", json={"name": "Difference Engines"})
    items: list[Any] = [
        {"id": "acc-1", **ACCOUNT},
        {"id": "acc-bad", **ACCOUNT, "country": "XYZ"},
        {"id": "acc-2", "name": "Difference Engines"},  # unchanged
        {"id": "acc-3", "name": "Jacquard Looms", "domains": ["jacquard.example"]},
        {"name": "no id"},
        "not an object",
        {"id": "acc-3", "name": "Jacquard Looms SA", "domains": ["jacquard.example"]},  # in order, after the one above
    ]

    answer = await api.post("/v1/accounts:batch", json={"accounts": items})

    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(result["id"], result["status"], result["changed"]) for result in results] == [
        ("acc-1", 201, True),
        ("acc-bad", 422, False),
        ("acc-2", 200, False),
        ("acc-3", 201, True),
        (None, 422, False),
        (None, 422, False),
        ("acc-3", 200, True),
    ]
    assert results[1]["errors"][0]["pointer"] == "/accounts/1/country"
    assert results[4]["errors"][0]["field"] == "accounts.4.id"
    assert results[6]["account"]["version"] == 2
    assert await _stored(intake_db) == ["acc-1", "acc-2", "acc-3"]
    assert [(event.account_id, event.name) for event in await _announced(intake_db)] == [
        ("acc-2", "Difference Engines"),
        ("acc-1", "Analytical Engines Ltd"),
        ("acc-3", "Jacquard Looms"),
        ("acc-3", "Jacquard Looms SA"),
    ]


@pytest.mark.parametrize("size", [0, MAX_BATCH + 1])
async def test_a_batch_holds_1_to_1000_accounts(api: httpx.AsyncClient, intake_db: Storage, size: int) -> None:
    answer = await api.post(
        "/v1/accounts:batch", json={"accounts": [{"id": f"a{n}", "name": "x"} for n in range(size)]}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "accounts"
    assert await _stored(intake_db) == []


async def test_a_full_batch_is_stored(api: httpx.AsyncClient, intake_db: Storage) -> None:
    items = [{"id": f"acc-{n}", "name": f"Account {n}", "domains": [f"a{n}.example"]} for n in range(MAX_BATCH)]
    answer = await api.post("/v1/accounts:batch", json={"accounts": items})
    assert answer.status_code == 200
    assert {result["status"] for result in answer.json()["results"]} == {201}
    assert len(await _announced(intake_db)) == MAX_BATCH


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_identical_puts_publish_once(api: httpx.AsyncClient, intake_db: Storage) -> None:
    # Ten new accounts racing to be created, and ten identical changes of an existing one.
    creates = [api.put("/v1/accounts/acc-1", json=ACCOUNT) for _ in range(10)]
    assert sorted(answer.status_code for answer in await asyncio.gather(*creates)) == [200] * 9 + [201]
    await api.put("/v1/accounts/acc-2", json={"name": "Difference Engines"})
    changes = [api.put("/v1/accounts/acc-2", json=ACCOUNT) for _ in range(10)]
    assert {answer.status_code for answer in await asyncio.gather(*changes)} == {200}
    assert [(event.account_id, event.version) for event in await _announced(intake_db)] == [
        ("acc-1", 1),
        ("acc-2", 1),
        ("acc-2", 2),
    ]
