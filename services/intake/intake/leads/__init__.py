"""Leads: accept, store, publish, and serve the read model built from every service's events."""
