"""What router's handlers, jobs and routes share in one process: settings, compiled rulesets, the roster cache."""

from dataclasses import dataclass, field

from router.assignments.roster import RosterCache
from router.config import RouterSettings
from router.notifications.wake import DeliveryWake
from router.rules.service import Rulesets


@dataclass
class RouterContext:
    """Created once per app in `create_app`; handlers and routes receive it, tests build their own."""

    settings: RouterSettings
    rulesets: Rulesets
    rosters: RosterCache = field(default_factory=RosterCache)
    deliveries: DeliveryWake = field(default_factory=DeliveryWake)
    """Wakes this app's delivery job when deliveries are committed or an SLA deadline arrives."""

    @classmethod
    def of(cls, settings: RouterSettings) -> "RouterContext":
        """The context for these settings."""
        return cls(settings=settings, rulesets=Rulesets(default_rep_id=settings.default_rep_id))
