"""Notification metrics: outcomes per channel kind, attempt time, speed-to-lead, pending deliveries (bounded labels)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Speed-to-lead spans the whole pipeline: from well under a second to the retry horizon.
SPEED_TO_LEAD_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)


class NotificationMetrics:
    """The delivery job's metrics, in the app's registry (created once per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.notifications_total = Counter(
            "leadrelay_notifications_total",
            "Notification attempts by channel kind and outcome (delivered, retried, dead, disabled).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "leadrelay_notification_attempt_seconds",
            "Time of one notification attempt (the HTTP request to the rep's channel), by channel kind.",
            ["channel"],
            registry=registry,
        )
        self.speed_to_lead_seconds = Histogram(
            "leadrelay_speed_to_lead_seconds",
            "From intake receiving a lead to its rep's first notification delivered.",
            buckets=SPEED_TO_LEAD_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge(
            "leadrelay_notifications_pending",
            "Deliveries waiting to be sent or retried (as the delivery job last counted them).",
            registry=registry,
        )
