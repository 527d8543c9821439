"""Scores: one per lead, with the ICP version and the points per criterion."""
