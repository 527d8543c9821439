"""The API-key registry: intake owns it and announces every change to the other services."""
