"""LeadRelay router: teams, reps, rules; assigns leads and explains why."""
