"""LeadRelay's shared platform library."""
