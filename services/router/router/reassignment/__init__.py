"""Reassignment: after an SLA breach whose escalation says reassign, or by hand."""
