"""LeadRelay intake: the edge every inbound write enters through, and the lead read model."""
