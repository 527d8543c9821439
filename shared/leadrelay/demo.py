"""The demo webhook sources `make run` configures outside production, and their well-known secrets.

Shared by intake (which seeds them) and `leadrelay demo` (which signs deliveries to them). Like the
demo keys, these secrets are public: intake never seeds them with ENVIRONMENT=production.
"""

import base64

DEMO_WEBHOOK_SECRET = "lr_demo_webhook_secret_insecure"
DEMO_STANDARD_SECRET = "whsec_" + base64.b64encode(DEMO_WEBHOOK_SECRET.encode()).decode()
DEMO_TOKEN_HEADER = "X-LeadRelay-Token"

# source name -> (kind, secret)
DEMO_SOURCES: dict[str, tuple[str, str]] = {
    "demo-hubspot": ("hubspot", DEMO_WEBHOOK_SECRET),
    "demo-mautic": ("mautic", DEMO_WEBHOOK_SECRET),
    "demo-segment": ("segment", DEMO_WEBHOOK_SECRET),
    "demo-marketo": ("marketo", DEMO_WEBHOOK_SECRET),
    "demo-pardot": ("pardot", DEMO_WEBHOOK_SECRET),
    "demo-standard": ("standard", DEMO_STANDARD_SECRET),
}
