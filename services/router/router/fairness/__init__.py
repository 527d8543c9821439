"""Fairness: rotations sharing leads among reps by weight, kept in the database to survive restarts and replicas."""
