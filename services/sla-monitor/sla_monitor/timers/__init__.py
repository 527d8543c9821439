"""Timers: one durable timer per open obligation."""
