"""Webhook sources: who may post leads to `POST /v1/webhooks/{name}`, signed how, mapped how."""
