"""Teams: their timezone, working hours, holiday calendar and manager; announced as team.changed."""
