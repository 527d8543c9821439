"""Signing as each platform signs: what the tests (and the e2e test) send to `POST /v1/webhooks/{name}`."""

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from standardwebhooks.webhooks import Webhook

from intake.webhooks.kinds import hubspot, mautic, segment


def body_of(payload: Any) -> bytes:
    """A payload as a sender serialises it (compact JSON)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def hubspot_v3(secret: str, body: bytes, *, uri: str, timestamp_ms: int | None = None) -> dict[str, str]:
    """Headers of a HubSpot v3-signed POST."""
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    signature = hubspot.sign_v3(secret, method="POST", uri=uri, body=body, timestamp=timestamp)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def hubspot_v1(secret: str, body: bytes) -> dict[str, str]:
    """Headers of a HubSpot v1-signed POST."""
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
    }


def mautic_signed(secret: str, body: bytes) -> dict[str, str]:
    """Headers of a Mautic webhook."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    assert signature == mautic.sign(secret, body)
    return {"Content-Type": "application/json", "Webhook-Signature": signature}


def segment_signed(secret: str, body: bytes) -> dict[str, str]:
    """Headers of a Segment webhook."""
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    assert signature == segment.sign(secret, body)
    return {"Content-Type": "application/json", "X-Signature": signature}


def standard_signed(secret: str, body: bytes, *, msg_id: str, timestamp: float | None = None) -> dict[str, str]:
    """Headers of a Standard Webhooks delivery."""
    from datetime import UTC, datetime

    signed_at = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=signed_at, data=body.decode())
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signature,
    }


def pardot_form(fields: dict[str, str]) -> bytes:
    """A Pardot form-handler body."""
    return urlencode(fields).encode()
