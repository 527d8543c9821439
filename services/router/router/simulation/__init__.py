"""Simulate and replay: leads routed in memory under any ruleset, with no side effects."""
