"""LeadRelay sla-monitor: the SLA agreement, business calendars and durable timers."""
