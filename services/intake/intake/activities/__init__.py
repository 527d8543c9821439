"""Activities on leads: rep and CRM actions and marketing engagement, through the lifecycle state machine."""
