"""What the SLA looks like from outside: a lead's obligations, leads at risk, compliance reports, and the gauges."""
