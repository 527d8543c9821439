"""Events the clocks consume: router's team.changed."""

from leadrelay.consumer import Handlers
from sla_monitor.context import SlaContext


def handlers(context: SlaContext) -> Handlers:
    """team.changed keeps the team's calendar and moves its open business-clock deadlines."""
    return Handlers()  # issue 10: clocks helper adds .on_batch(TeamChanged, ...)
