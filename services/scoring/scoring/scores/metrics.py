"""Scoring's own metrics: grades, MQL transitions, account matches, re-scoring progress (bounded labels only)."""

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from leadrelay.events import AccountMatch

OTHER_SOURCE = "other"
NO_MATCH = "none"


class ScoringMetrics:
    """Counters and gauges of one scoring process, in the app's registry."""

    def __init__(self, registry: CollectorRegistry, *, sources: Iterable[str]) -> None:
        self.registry = registry
        self._sources = frozenset(sources)
        self.leads_scored_total = Counter(
            "leadrelay_leads_scored_total",
            "Scores published (lead.scored), by grade and MQL decision.",
            ["grade", "mql"],
            registry=registry,
        )
        self.mql_transitions_total = Counter(
            "leadrelay_mql_transitions_total",
            "Leads that became an MQL, by source (sources outside SCORING_SOURCES count as `other`).",
            ["source"],
            registry=registry,
        )
        self.account_matches_total = Counter(
            "leadrelay_account_matches_total",
            "Received leads matched to an account, by method (`none` when no account matched).",
            ["method"],
            registry=registry,
        )
        self.rescore_leads_remaining = Gauge(
            "leadrelay_rescore_leads_remaining",
            "Leads the current re-scoring run (after an ICP activation) has still to re-score.",
            registry=registry,
        )
        self.leads_rescored_total = Counter(
            "leadrelay_leads_rescored_total",
            "Leads re-scored by re-scoring runs after ICP activations.",
            registry=registry,
        )

    def source_label(self, source: str) -> str:
        """The source as a label: one of the configured sources, or `other`."""
        return source if source in self._sources else OTHER_SOURCE

    def scored(self, *, grade: str | None, mql: bool, became_mql: bool, source: str) -> None:
        """Count one published score."""
        self.leads_scored_total.labels(grade or NO_MATCH, "true" if mql else "false").inc()
        if became_mql:
            self.mql_transitions_total.labels(self.source_label(source)).inc()

    def matched(self, match: AccountMatch | None) -> None:
        """Count one account-matching outcome."""
        self.account_matches_total.labels(match.method.value if match else NO_MATCH).inc()
