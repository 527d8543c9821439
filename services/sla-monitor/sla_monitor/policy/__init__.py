"""The SLA policy agreement (kind `sla`): the sla-monitor owns it; marketing and sales co-sign it."""
