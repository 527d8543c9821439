"""The demo webhook sources `make run` configures outside production, the demo receiver, and their well-known secrets.

Shared by intake (which seeds the sources), `leadrelay demo` (which signs deliveries to them), and
`make run` and `leadrelay receiver` (the reps' webhook channels point at the receiver and are signed
with its secret). Like the demo keys, these secrets are public: nothing seeds them with
ENVIRONMENT=production.
"""

import base64

DEMO_WEBHOOK_SECRET = "lr_demo_webhook_secret_insecure"
DEMO_STANDARD_SECRET = "whsec_" + base64.b64encode(DEMO_WEBHOOK_SECRET.encode()).decode()
DEMO_TOKEN_HEADER = "X-LeadRelay-Token"

DEMO_RECEIVER_SECRET = "whsec_" + base64.b64encode(b"lr_demo_receiver_secret_insecure").decode()
RECEIVER_SECRET_VARIABLE = "LEADRELAY_RECEIVER_SECRET"
RECEIVER_PORT_VARIABLE = "LEADRELAY_RECEIVER_PORT"
DEFAULT_RECEIVER_PORT = 8010

# source name -> (kind, secret)
DEMO_SOURCES: dict[str, tuple[str, str]] = {
    "demo-hubspot": ("hubspot", DEMO_WEBHOOK_SECRET),
    "demo-mautic": ("mautic", DEMO_WEBHOOK_SECRET),
    "demo-segment": ("segment", DEMO_WEBHOOK_SECRET),
    "demo-marketo": ("marketo", DEMO_WEBHOOK_SECRET),
    "demo-pardot": ("pardot", DEMO_WEBHOOK_SECRET),
    "demo-standard": ("standard", DEMO_STANDARD_SECRET),
}
