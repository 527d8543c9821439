"""When to try a failing event again, and when to give up on it."""

from dataclasses import dataclass

from leadrelay.db import is_unavailable


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with doubling backoff for failures; outages are waited out without limit."""

    max_retries: int
    backoff_seconds: float
    outage_wait_seconds: float

    @property
    def attempts(self) -> int:
        """Attempts before an event is dead-lettered."""
        return self.max_retries + 1

    @staticmethod
    def is_outage(error: BaseException) -> bool:
        """An outage (the database is unreachable) is not the event's fault: it never counts."""
        return is_unavailable(error)

    def gives_up_after(self, failures: int) -> bool:
        """Whether `failures` failed attempts exhaust the budget."""
        return failures >= self.attempts

    def backoff(self, failures: int) -> float:
        """Wait before the next attempt after `failures` failed ones."""
        return float(self.backoff_seconds * 2 ** (failures - 1))
