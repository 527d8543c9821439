"""The sla-monitor's metrics: obligations open, warned, breached and met, and how fast reps respond.

Labels are bounded: team ids, obligation names and grades (never a lead or a rep). A timer without a
team or grade counts under `none`.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NONE = "none"
"""The label of a timer without a team or a grade."""
RESPONSE_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400)
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0)


class SlaMetrics:
    """Counters, gauges and histograms of one sla-monitor process, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.open_obligations = Gauge(
            "leadrelay_sla_open_obligations",
            "Obligations running or warned, by owning team and obligation (refreshed by a leader job).",
            ["team", "obligation"],
            registry=registry,
        )
        self.at_risk = Gauge(
            "leadrelay_sla_at_risk",
            "Open obligations already warned (past the policy's warn_at share), by owning team.",
            ["team"],
            registry=registry,
        )
        self.started_total = Counter(
            "leadrelay_sla_started_total",
            "Obligations started, by owning team, obligation and grade.",
            ["team", "obligation", "grade"],
            registry=registry,
        )
        self.warnings_total = Counter(
            "leadrelay_sla_warnings_total",
            "Obligations warned, by owning team, obligation and grade.",
            ["team", "obligation", "grade"],
            registry=registry,
        )
        self.breaches_total = Counter(
            "leadrelay_sla_breaches_total",
            "Obligations breached, by owning team, obligation and grade.",
            ["team", "obligation", "grade"],
            registry=registry,
        )
        self.met_total = Counter(
            "leadrelay_sla_met_total",
            "Obligations met in time, by owning team, obligation and grade.",
            ["team", "obligation", "grade"],
            registry=registry,
        )
        self.cancelled_total = Counter(
            "leadrelay_sla_cancelled_total",
            "Obligations closed unmet and unbreached, by obligation and reason (stage_left, reassigned).",
            ["obligation", "reason"],
            registry=registry,
        )
        self.response_seconds = Histogram(
            "leadrelay_sla_response_seconds",
            "Wall seconds from an obligation's start to the activity that met it (late ones too), by team, obligation.",
            ["team", "obligation"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.response_business_seconds = Histogram(
            "leadrelay_sla_response_business_seconds",
            "Business seconds on the owning team's clock from an obligation's start to the activity that met it.",
            ["team", "obligation"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.fire_lateness_seconds = Histogram(
            "leadrelay_sla_fire_lateness_seconds",
            "How long after its instant a warning or breach was committed (never negative: never early).",
            ["event"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        # Both series exist from the start, so a rate over them sees the first warning and breach.
        for event in ("warning", "breached"):
            self.fire_lateness_seconds.labels(event=event)
