"""`leadrelay receiver` run as a user runs it: verified notifications answered 204 and printed, tampered ones 401."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from leadrelay.cli.receiver import notice_line, notice_of
from leadrelay.demo import DEMO_RECEIVER_SECRET
from leadrelay.testing import ReceiverProcess, wait_until

SECRET = "whsec_" + "dGVzdF9yZWNlaXZlcl9zZWNyZXRfMDEyMzQ1Njc4OQ=="
NOTIFICATION = {
    "type": "lead.assigned",
    "lead": {"id": "7f1c2a4e-lead", "company": "Analytical Engines", "email": "ada@analytical.example"},
    "grade": "A1",
    "rep_id": "rep-grace",
    "explanation": {"rule_path": ["enterprise_accounts", "emea"]},
    "account": {"account_id": "acc-analytical", "owner_rep_id": "rep-grace"},
    "sla": {"due_at": "2026-11-27T10:05:00Z"},
}


@pytest.fixture
def started() -> Iterator[list[ReceiverProcess]]:
    receivers: list[ReceiverProcess] = []
    yield receivers
    for receiver in receivers:
        receiver.kill()


def _signed(body: dict[str, Any], *, secret: str, msg_id: str) -> tuple[bytes, dict[str, str]]:
    data = json.dumps(body).encode()
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=data.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return data, {**headers, "Content-Type": "application/json"}


async def test_a_signed_notification_is_answered_204_and_printed_and_a_tampered_one_401(
    tmp_path: Path, started: list[ReceiverProcess]
) -> None:
    receiver = ReceiverProcess(tmp_path, "--secret", SECRET, "--json")
    started.append(receiver)
    async with httpx.AsyncClient(timeout=5) as client:
        await receiver.wait_listening()
        body, headers = _signed(NOTIFICATION, secret=SECRET, msg_id="msg_assignment1_channel0")
        good = await client.post(f"{receiver.url}/reps/rep-grace", content=body, headers=headers)
        tampered = body.replace(b"A1", b"D4")
        bad = await client.post(f"{receiver.url}/reps/rep-grace", content=tampered, headers=headers)

        assert good.status_code == 204
        assert bad.status_code == 401

        async def both_printed() -> list[dict[str, Any]] | None:
            notices = [json.loads(line) for line in receiver.lines() if line.startswith("{")]
            found = [notice for notice in notices if notice["path"] == "/reps/rep-grace"]
            return found if len(found) >= 2 else None

        first, second = await wait_until(both_printed, timeout=10, what="both notifications printed")
    assert first == {
        "verified": True,
        "path": "/reps/rep-grace",
        "webhook_id": "msg_assignment1_channel0",
        "type": "lead.assigned",
        "rep_id": "rep-grace",
        "lead_id": "7f1c2a4e-lead",
        "company": "Analytical Engines",
        "grade": "A1",
        "rule": "emea",
        "sla_due_at": "2026-11-27T10:05:00Z",
        "text": None,
    }
    assert second["verified"] is False
    assert second["grade"] == "D4"
    assert "ada@analytical.example" not in receiver.out.read_text()  # the lead's email is never printed
    assert receiver.stop() in (0, 130)


async def test_by_default_it_verifies_with_the_demo_secret_and_prints_slack_text_for_people(
    tmp_path: Path, started: list[ReceiverProcess]
) -> None:
    receiver = ReceiverProcess(tmp_path)
    started.append(receiver)
    async with httpx.AsyncClient(timeout=5) as client:
        await receiver.wait_listening()
        body, headers = _signed(NOTIFICATION, secret=DEMO_RECEIVER_SECRET, msg_id="msg_demo")
        signed = await client.post(f"{receiver.url}/reps/rep-grace", content=body, headers=headers)
        other_secret = await client.post(
            f"{receiver.url}/reps/rep-grace", content=body, headers=_signed(NOTIFICATION, secret=SECRET, msg_id="x")[1]
        )
        slack = await client.post(f"{receiver.url}/slack/rep-alan", json={"text": "New lead for you: Compiler Co (B2)"})

        assert (signed.status_code, other_secret.status_code, slack.status_code) == (204, 401, 204)

        async def printed() -> list[str] | None:
            lines = receiver.lines()
            return lines if any("Compiler Co" in line for line in lines) else None

        lines = await wait_until(printed, timeout=10, what="the Slack text printed")
    verified = next(line for line in lines if "msg_demo" in line)
    assert verified.startswith("verified")
    for part in (
        "rep rep-grace",
        "company Analytical Engines",
        "grade A1",
        "rule emea",
        "SLA due 2026-11-27T10:05:00Z",
    ):
        assert part in verified
    assert any(line.startswith("NOT verified") for line in lines)
    assert any(line.startswith("slack (unsigned)") and "New lead for you" in line for line in lines)


def test_odd_bodies_print_what_they_have_and_never_fail() -> None:
    for body in (None, [], "text", {"lead": "x", "sla": ["y"], "explanation": []}, {"type": 3}):
        notice = notice_of(body, verified=False, path="/", webhook_id=None)
        assert notice_line(notice).startswith("[bold red]NOT verified[/]")
    assert notice_of({"sla": "2026-11-27T10:05:00Z"}, verified=True, path="/", webhook_id="m").sla_due_at == (
        "2026-11-27T10:05:00Z"
    )
