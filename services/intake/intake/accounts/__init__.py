"""Accounts a CRM syncs: stored, and announced as account.changed when they really change."""
