"""Assignments: at most one live assignment per lead, with the rule path that chose the rep."""
