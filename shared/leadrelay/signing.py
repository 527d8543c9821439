"""Webhook signatures as each platform computes them: intake verifies with these, `leadrelay demo` signs with them.

HubSpot ("Validating requests": v3, v2, v1), Mautic (Webhook-Signature), Segment (X-Signature) and
Standard Webhooks (webhook-signature `v1,` entries); docs/sources.md has the details and sources per
kind, and services/intake/tests/test_webhook_documented_vectors.py checks each against the
platform's own published examples.
"""

import base64
import hashlib
import hmac
import re

# HubSpot v3 signs the URI with these escapes decoded, and no others (a `%20`, `%26` or `%3D` stays
# encoded): the table in "Validating requests", "Validate the v3 request signature". HubSpot's own
# client libraries sign the URI as given, which agrees whenever the URI holds none of these escapes.
_HUBSPOT_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_HUBSPOT_ESCAPE = re.compile("|".join(_HUBSPOT_DECODED), re.IGNORECASE)
STANDARD_SECRET_PREFIX = "whsec_"


def hubspot_signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it in v3."""
    return _HUBSPOT_ESCAPE.sub(lambda match: _HUBSPOT_DECODED[match.group(0).upper()], uri)


def hubspot_v3(secret: str, *, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Base64 HMAC-SHA256 of method + URI + body + timestamp (milliseconds)."""
    source = method.encode() + hubspot_signed_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def hubspot_v2(secret: str, *, method: str, uri: str, body: bytes) -> str:
    """Hex SHA-256 of secret + method + URI + body."""
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def hubspot_v1(secret: str, *, body: bytes) -> str:
    """Hex SHA-256 of secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def mautic(secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of the body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def segment(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA1 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def standard(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed by the whsec_ secret."""
    # Padded as the `standardwebhooks` library pads it, so an unpadded whsec_ secret signs as it verifies.
    key = base64.b64decode(secret.removeprefix(STANDARD_SECRET_PREFIX) + "==")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
