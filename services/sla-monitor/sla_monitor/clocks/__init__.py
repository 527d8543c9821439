"""Team business clocks: calendars kept from router's team.changed events, and the arithmetic on them."""
