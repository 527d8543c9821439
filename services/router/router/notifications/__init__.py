"""Telling reps about their leads: deliveries are rows, sent by a job with retries, never from a handler."""
