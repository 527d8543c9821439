"""Signed webhooks from marketing platforms: verify, map each record to a lead, accept once."""
