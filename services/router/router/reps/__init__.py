"""Reps: who may take leads, in which teams, with which caps and channels; and when they are available."""
