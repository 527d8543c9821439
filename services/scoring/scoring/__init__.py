"""LeadRelay scoring: the ICP agreement, account matching and the explained score."""
