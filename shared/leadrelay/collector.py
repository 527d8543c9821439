"""Python's garbage collector tuned for a long-running service process (see docs/configuration.md)."""

import gc
import logging

logger = logging.getLogger(__name__)


def tune_for_service(*, young_threshold: int) -> bool:
    """Collect less often, and never again over the heap built at start; returns False when left untouched.

    Everything alive once a service has started (modules, the app, ORM mappers, pydantic models)
    lives as long as the process, yet every full collection walked it again: a pause of the whole
    event loop that every hop queued behind. Freezing moves those objects out of the collector's
    sight, once per process (frozen objects are never collected, so a process that starts apps
    again, such as a test run, freezes only its first). `young_threshold` 0 leaves the
    interpreter's collector as it is.
    """
    if young_threshold == 0:
        return False
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    if gc.get_freeze_count() == 0:
        gc.collect()  # what is garbage already must not be frozen with the rest
        gc.freeze()
        logger.info("startup heap frozen", extra={"objects": gc.get_freeze_count()})
    return True
