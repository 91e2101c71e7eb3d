"""Fleet Tracker notification service."""
