"""Every operation of every service's OpenAPI document: 401 without a key, 403 without its scope.

Operations marked `x-signature-auth` (signed webhooks) take no key: 401 without a valid signature.
"""

import asyncio
import re
from typing import Any

import httpx

from leadrelay.apikeys import Scope
from leadrelay.broker import EmbeddedBroker
from leadrelay.testing import DEV_API_KEY, Stack, wait_until
from tests.e2e.conftest import StackFactory

# Operations anyone may call: probes and scrapes carry no personal data and no key.
PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, list[str] | None, bool]]:
    return [
        (method, path, operation.get("x-required-scopes"), operation.get("x-signature-auth") is True)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS
    ]


def _concrete(path: str) -> str:
    # Any value of the right shape: authentication is checked before the resource is looked up.
    return re.sub(r"\{[^}]+\}", "1", path)


async def _key_without(stack: Stack, scopes: list[str]) -> str:
    """A live key holding every scope except `scopes`, known to every service."""
    kept = sorted(set(Scope) - set(scopes))
    answer = await stack.api.post(
        "/v1/keys", json={"name": f"lacks-{'-'.join(scopes) or 'nothing'}", "team": "integration", "scopes": kept}
    )
    assert answer.status_code == 201, answer.text
    secret: str = answer.json()["key"]
    await asyncio.gather(*(stack.wait_key_known(name, secret, timeout=10) for name in stack.services))
    return secret


async def _check_signature_auth(client: httpx.AsyncClient, base_url: str, path: str, where: str) -> None:
    """A signed operation refuses a missing or bad signature (a source "1" exists: the signature is what fails)."""
    source = {"kind": "mautic", "secrets": ["matrix-secret-0123456789"]}
    configured = await client.put(
        f"{base_url}/v1/sources/1", json=source, headers={"Authorization": f"Bearer {DEV_API_KEY}"}
    )
    assert configured.status_code in (200, 201), configured.text
    url = f"{base_url}{_concrete(path)}"
    for headers in ({}, {"Webhook-Signature": "bm90IGEgc2lnbmF0dXJl"}, {"Authorization": f"Bearer {DEV_API_KEY}"}):
        answer = await client.post(url, json={}, headers=headers)
        assert answer.status_code == 401, f"{where} with {sorted(headers)}: {answer.status_code}"
        assert answer.headers["content-type"] == "application/problem+json"


async def test_every_operation_needs_a_key_and_its_scope(broker: EmbeddedBroker, make_stack: StackFactory) -> None:
    stack = await make_stack(broker)
    await stack.start()
    checked: list[str] = []
    async with httpx.AsyncClient(timeout=10.0) as client:
        for name, service in stack.services.items():
            document = (await client.get(f"{service.url}/openapi.json")).json()
            for method, path, scopes, signed in _operations(document):
                where = f"{name} {method.upper()} {path}"
                if signed:
                    assert scopes is None, f"{where} is signed and also asks for a key"
                    await _check_signature_auth(client, service.url, path, where)
                    checked.append(where)
                    continue
                if scopes is None:
                    assert (method, path) in PUBLIC, f"{where} states no scopes: every operation must need a key"
                    continue
                url = f"{service.url}{_concrete(path)}"
                anonymous = await client.request(method, url, json={})
                assert anonymous.status_code == 401, f"{where} without a key: {anonymous.status_code}"
                assert anonymous.headers["content-type"] == "application/problem+json"
                wrong = await client.request(
                    method, url, json={}, headers={"Authorization": "Bearer lr_not_a_key_at_all"}
                )
                assert wrong.status_code == 401, f"{where} with an unknown key: {wrong.status_code}"
                if scopes:
                    lacking = await _key_without(stack, scopes)
                    refused = await client.request(method, url, json={}, headers={"Authorization": f"Bearer {lacking}"})
                    assert refused.status_code == 403, f"{where} without {scopes}: {refused.status_code}"
                    assert all(scope in refused.json()["detail"] for scope in scopes)
                    assert lacking not in refused.text
                    admitted = await client.request(
                        method, url, json={}, headers={"Authorization": f"Bearer {DEV_API_KEY}"}
                    )
                    assert admitted.status_code not in (401, 403), f"{where} refused the dev key"
                checked.append(where)
    # The walk reached the operations it is meant to guard on every service.
    assert "intake POST /v1/leads" in checked
    assert "intake DELETE /v1/keys/{key_id}" in checked
    assert "intake POST /v1/webhooks/{name}" in checked
    for name in stack.services:
        assert f"{name} GET /v1/whoami" in checked
        assert f"{name} GET /v1/audit" in checked


async def test_whoami_answers_the_calling_key_on_every_service(
    broker: EmbeddedBroker, make_stack: StackFactory
) -> None:
    stack = await make_stack(broker)
    await stack.start()
    async with httpx.AsyncClient(timeout=10.0) as client:
        answers = [
            await client.get(f"{service.url}/v1/whoami", headers={"Authorization": f"Bearer {DEV_API_KEY}"})
            for service in stack.services.values()
        ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json() == {"id": "key_development", "name": "development", "team": "ops", "scopes": sorted(Scope)}
        assert DEV_API_KEY not in answer.text

    async def demo_keys_known() -> bool:
        async with httpx.AsyncClient(timeout=10.0) as client:
            teams = []
            for secret in ("lr_demo_marketing_insecure", "lr_demo_sales_insecure"):
                answer = await client.get(
                    f"{stack.services['scoring'].url}/v1/whoami", headers={"Authorization": f"Bearer {secret}"}
                )
                teams.append(answer.json().get("team") if answer.status_code == 200 else None)
        return teams == ["marketing", "sales"]

    await wait_until(demo_keys_known, timeout=10, what="the demo keys on scoring")
